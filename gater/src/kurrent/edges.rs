//! What KurrentDB clients call around the edges of their work: which methods the
//! server has (`ServerFeatures`), which members the cluster has (`Gossip`), and
//! persistent subscriptions (`PersistentSubscriptions.List`, for teardown paths).
//!
//! To a KurrentDB client the gater is the whole cluster: it routes every call to the
//! store's nodes itself, so gossip names this front door as the one live member, in
//! the leader's state (a client that prefers the leader then stays here). A client
//! given several gaters (`kurrentdb+discover://` or several hosts) finds a live one
//! by asking each in turn.

use std::time::SystemTime;

use tonic::{Request, Response, Status};

use super::convert::{created_ticks, uuid_to};
use super::proto::event_store::client::gossip::{
    gossip_server::Gossip, member_info::VNodeState, ClusterInfo, EndPoint, MemberInfo,
};
use super::proto::event_store::client::persistent_subscriptions::{
    persistent_subscriptions_server::PersistentSubscriptions, ListReq, ListResp,
};
use super::proto::event_store::client::server_features::{
    server_features_server::ServerFeatures, SupportedMethod, SupportedMethods,
};
use super::proto::event_store::client::Empty;
use super::{Door, Peer};

/// The KurrentDB release whose v1 client protocol this front door speaks: clients
/// that decide what to use by the server's version see one that has what we serve.
pub const PROTOCOL_VERSION: &str = "24.10.0";

/// What is served, by gRPC service name and lower-case method name, with the
/// features KurrentDB advertises for them.
const SERVED: &[(&str, &str, &[&str])] = &[
    (
        "event_store.client.streams.streams",
        "read",
        &["position", "events"],
    ),
    ("event_store.client.streams.streams", "append", &[]),
    ("event_store.client.streams.streams", "batchappend", &[]),
    ("event_store.client.streams.streams", "delete", &[]),
    ("event_store.client.streams.streams", "tombstone", &[]),
    ("event_store.client.gossip.gossip", "read", &[]),
    (
        "event_store.client.server_features.serverfeatures",
        "getsupportedmethods",
        &[],
    ),
    (
        "event_store.client.persistent_subscriptions.persistentsubscriptions",
        "list",
        &[],
    ),
];

/// The methods [`SERVED`] lists, as `GetSupportedMethods` answers.
pub fn supported_methods() -> SupportedMethods {
    SupportedMethods {
        methods: SERVED
            .iter()
            .map(|(service, method, features)| SupportedMethod {
                method_name: (*method).to_string(),
                service_name: (*service).to_string(),
                features: features.iter().map(|f| (*f).to_string()).collect(),
            })
            .collect(),
        event_store_server_version: PROTOCOL_VERSION.to_string(),
    }
}

#[tonic::async_trait]
impl ServerFeatures for Door {
    async fn get_supported_methods(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<SupportedMethods>, Status> {
        Ok(Response::new(supported_methods()))
    }
}

#[tonic::async_trait]
impl Gossip for Door {
    async fn read(&self, request: Request<Empty>) -> Result<Response<ClusterInfo>, Status> {
        let now_us = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let reached = request.extensions().get::<Peer>().and_then(|p| p.local);
        let Some(address) = self.inner.advertise.or(reached) else {
            return Err(Status::internal(
                "this front door does not know its own address: set its advertise address",
            ));
        };
        Ok(Response::new(ClusterInfo {
            members: vec![MemberInfo {
                instance_id: Some(uuid_to(self.inner.instance, false)),
                time_stamp: i64::try_from(created_ticks(now_us)).unwrap_or(i64::MAX),
                state: VNodeState::Leader as i32,
                is_alive: true,
                http_end_point: Some(EndPoint {
                    address: address.ip().to_string(),
                    port: u32::from(address.port()),
                }),
            }],
        }))
    }
}

#[tonic::async_trait]
impl PersistentSubscriptions for Door {
    /// KurrentDB's persistent subscriptions are not served: there are none to list.
    async fn list(&self, request: Request<ListReq>) -> Result<Response<ListResp>, Status> {
        // The caller must still be one the gater accepts.
        self.call(&request).await?;
        Ok(Response::new(ListResp {
            subscriptions: Vec::new(),
        }))
    }
}
