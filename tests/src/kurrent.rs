//! A KurrentDB gRPC client of our own, for the bench and for tests that need what the
//! official clients do not show (several batches on one `BatchAppend` call).
//!
//! [`KurrentConn::append`] sends what KurrentDB's own clients send for an append
//! (`Streams.Append`: options, then each event with its id, type and content type)
//! on one HTTP/2 connection; the bench times it beside tarpc's appends (its
//! `Via::Kurrent` path). [`proto`] is the client side of the protocol, generated
//! by `tests/build.rs` from the gater's copy of the `.proto` files.

use anyhow::{anyhow, bail, Context};
use reckon_gater::types::{AppendResult, ContentType, NewEvent};
use tonic::transport::Channel;

/// The client side of KurrentDB's `Streams` service, generated.
#[allow(dead_code, missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/kurrent_proto.rs"));
}

use proto::event_store::client::streams::streams_client::StreamsClient;
use proto::event_store::client::streams::{append_req, append_resp, AppendReq};
use proto::event_store::client::{uuid as pb_uuid, Empty, StreamIdentifier, Uuid};

/// One KurrentDB connection (an HTTP/2 channel) to a front door.
#[derive(Clone)]
pub struct KurrentConn {
    client: StreamsClient<Channel>,
    addr: String,
}

impl KurrentConn {
    /// The generated client, for calls beyond [`KurrentConn::append`].
    pub fn client(&self) -> StreamsClient<Channel> {
        self.client.clone()
    }
}

impl KurrentConn {
    /// Connects to the front door at `addr` (`HOST:PORT`, clear text).
    pub async fn connect(addr: &str) -> anyhow::Result<KurrentConn> {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .context("a KurrentDB front door address")?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to the KurrentDB front door at {addr}"))?;
        Ok(KurrentConn {
            client: StreamsClient::new(channel),
            addr: addr.to_string(),
        })
    }

    /// Appends `events` to `stream`, any revision expected; what the store answered,
    /// in our terms (a commit position is a global position plus one).
    pub async fn append(&self, stream: &str, events: &[NewEvent]) -> anyhow::Result<AppendResult> {
        let mut requests = Vec::with_capacity(events.len() + 1);
        requests.push(AppendReq {
            content: Some(append_req::Content::Options(append_req::Options {
                stream_identifier: Some(StreamIdentifier {
                    stream_name: stream.as_bytes().to_vec(),
                }),
                expected_stream_revision: Some(append_req::options::ExpectedStreamRevision::Any(
                    Empty {},
                )),
            })),
        });
        for e in events {
            let content_type = match e.content_type {
                ContentType::Json => "application/json",
                ContentType::Binary => "application/octet-stream",
            };
            let id = e.event_id.unwrap_or_else(::uuid::Uuid::now_v7);
            requests.push(AppendReq {
                content: Some(append_req::Content::ProposedMessage(
                    append_req::ProposedMessage {
                        id: Some(Uuid {
                            value: Some(pb_uuid::Value::String(id.hyphenated().to_string())),
                        }),
                        metadata: [
                            ("type".to_string(), e.event_type.clone()),
                            ("content-type".to_string(), content_type.to_string()),
                        ]
                        .into(),
                        custom_metadata: e.metadata.clone(),
                        data: e.data.clone(),
                    },
                )),
            });
        }
        let answer = self
            .client
            .clone()
            .append(futures::stream::iter(requests))
            .await
            .map_err(|s| anyhow!("append to {stream} through {}: {s}", self.addr))?
            .into_inner();
        let Some(append_resp::Result::Success(ok)) = answer.result else {
            bail!("append to {stream} was refused: {answer:?}");
        };
        let version = match ok.current_revision_option {
            Some(append_resp::success::CurrentRevisionOption::CurrentRevision(v)) => v,
            other => bail!("append to {stream} answered no revision: {other:?}"),
        };
        let commit = match ok.position_option {
            Some(append_resp::success::PositionOption::Position(p)) => p.commit_position,
            other => bail!("append to {stream} answered no position: {other:?}"),
        };
        let last_position = commit
            .checked_sub(1)
            .context("a commit position of 0 for an appended event")?;
        Ok(AppendResult {
            version,
            first_position: last_position + 1 - events.len() as u64,
            last_position,
        })
    }
}
