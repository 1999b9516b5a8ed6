//! The configuration's tests: layering of defaults, file, environment and flags,
//! and validation; those that load run inside a `figment::Jail`.

use super::*;
use clap::Parser;
use figment::Jail;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/node.toml");

/// Runs `f` in a figment jail (own working directory, env restored after),
/// refusing to start if the outer environment already sets config keys.
fn jail(f: impl FnOnce(&mut Jail) -> figment::Result<()>) {
    Jail::expect_with(|jail| {
        // Checked inside: the jail's lock keeps other tests' variables out.
        let stray: Vec<String> = std::env::vars()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with(ENV_PREFIX))
            .collect();
        assert!(
            stray.is_empty(),
            "unset {stray:?} before running these tests: they change the config under test"
        );
        f(jail)
    });
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

fn args(argv: &[&str]) -> NodeArgs {
    let mut full = vec!["reckon-node"];
    full.extend_from_slice(argv);
    NodeArgs::try_parse_from(full).expect("test arguments parse")
}

fn load_ok(argv: &[&str]) -> figment::Result<NodeConfig> {
    load(&args(argv)).map_err(|e| figment::Error::from(e.to_string()))
}

fn load_err(argv: &[&str]) -> ConfigError {
    load(&args(argv)).expect_err("config should be rejected")
}

#[test]
fn defaults_are_valid_and_match_the_interface() {
    let config = NodeConfig::default();
    config.validate().expect("defaults validate");
    assert_eq!(config.node_id, 1);
    assert_eq!(config.listen, loopback(7600));
    assert_eq!(config.advertise_addr(), "127.0.0.1:7600");
    assert_eq!(config.data_dir, PathBuf::from("./reckon-data"));
    assert_eq!(config.mode, Mode::Single);
    assert_eq!(config.stores, vec!["default"]);
    assert_eq!(config.timeout(), Duration::from_secs(5));
    assert_eq!(
        config.discovery.multicast_addr,
        Ipv4Addr::new(239, 255, 0, 1)
    );
    assert_eq!(config.discovery.port, 45892);
    assert_eq!(config.write.batch_bytes_max, 4 * 1024 * 1024);
    assert_eq!(config.raft.heartbeat_ms, 250);
}

#[test]
fn precedence_is_defaults_then_file_then_env_then_flags() {
    jail(|jail| {
        jail.create_file(
            "node.toml",
            r#"
                node_id = 2
                listen = "127.0.0.1:7601"
                mode = "cluster"
                stores = ["from_file"]
                [discovery]
                method = "multicast"
                "#,
        )?;

        let config = load_ok(&[])?;
        assert_eq!(config, NodeConfig::default());

        let config = load_ok(&["--config", "node.toml"])?;
        assert_eq!(config.node_id, 2);
        assert_eq!(config.listen, loopback(7601));
        assert_eq!(config.discovery.method, DiscoveryMethod::Multicast);
        assert_eq!(config.mode, Mode::Cluster);
        assert_eq!(config.stores, vec!["from_file"]);

        jail.set_env("RECKON_NODE_NODE_ID", 3);
        jail.set_env("RECKON_NODE_LISTEN", "127.0.0.1:7602");
        jail.set_env("RECKON_NODE_DISCOVERY__METHOD", "k8s_dns");
        jail.set_env("RECKON_NODE_STORES", "[from_env]");
        let config = load_ok(&["--config", "node.toml"])?;
        assert_eq!(config.node_id, 3);
        assert_eq!(config.listen, loopback(7602));
        assert_eq!(config.discovery.method, DiscoveryMethod::K8sDns);
        assert_eq!(config.mode, Mode::Cluster);
        assert_eq!(config.stores, vec!["from_env"]);

        let config = load_ok(&[
            "--config",
            "node.toml",
            "--node-id",
            "4",
            "--listen",
            "127.0.0.1:7603",
            "--store",
            "a",
            "--store",
            "b",
            "--gater",
            "127.0.0.1:7700",
        ])?;
        assert_eq!(config.node_id, 4);
        assert_eq!(config.listen, loopback(7603));
        // No flag sets the method: the env layer still wins over the file.
        assert_eq!(config.discovery.method, DiscoveryMethod::K8sDns);
        assert_eq!(config.stores, vec!["a", "b"]);
        assert_eq!(config.gaters, vec!["127.0.0.1:7700"]);
        // The flag layer (--dev) overrides mode from the file.
        let config = load_ok(&[
            "--config",
            "node.toml",
            "--dev",
            "--listen",
            "127.0.0.1:7603",
        ])?;
        assert_eq!(config.mode, Mode::Single);
        assert_eq!(config.listen, loopback(7603));
        assert_eq!(config.node_id, 3);
        Ok(())
    });
}

#[test]
fn env_sets_nested_keys() {
    jail(|jail| {
        let secret = "s".repeat(DISCOVERY_SECRET_BYTES_MIN);
        jail.set_env("RECKON_NODE_DISCOVERY__SECRET", &secret);
        jail.set_env("RECKON_NODE_DISCOVERY__PORT", 5000);
        jail.set_env("RECKON_NODE_DISCOVERY__ANNOUNCE_MS", 250);
        jail.set_env("RECKON_NODE_DISCOVERY__DNS_SERVER", "127.0.0.1:5353");
        jail.set_env("RECKON_NODE_RAFT__HEARTBEAT_MS", 150);
        jail.set_env("RECKON_NODE_WRITE__PIPELINE_MAX", 4);
        jail.set_env("RECKON_NODE_LOG__DIR", "/var/log/reckon");
        jail.set_env("RECKON_NODE_LOG__LEVEL", "warn,reckon_db=debug");
        jail.set_env("RECKON_NODE_LOG__RETAIN_FILES", 3);
        jail.set_env("RECKON_NODE_LIMITS__TAGS_PER_EVENT_MAX", 8);
        jail.set_env("RECKON_NODE_METRICS_LISTEN", "127.0.0.1:9600");
        jail.set_env("RECKON_NODE_SHUTDOWN_GRACE_MS", 250);
        let config = load_ok(&[])?;
        assert_eq!(config.discovery.secret.as_deref(), Some(secret.as_str()));
        assert_eq!(config.discovery.port, 5000);
        assert_eq!(config.discovery.announce_ms, 250);
        assert_eq!(
            config.discovery.dns_server,
            Some(SocketAddr::from(([127, 0, 0, 1], 5353)))
        );
        assert_eq!(config.raft.heartbeat_ms, 150);
        assert_eq!(config.write.pipeline_max, 4);
        assert_eq!(config.log.dir, Some(PathBuf::from("/var/log/reckon")));
        assert_eq!(config.log.level, "warn,reckon_db=debug");
        assert_eq!(config.log.retain_files, 3);
        assert_eq!(config.limits.tags_per_event_max, 8);
        assert_eq!(config.metrics_listen, Some(loopback(9600)));
        assert_eq!(config.shutdown_grace_ms, 250);
        Ok(())
    });
}

#[test]
fn dev_is_a_ready_single_node() {
    jail(|jail| {
        jail.create_file(
            "node.toml",
            r#"
                mode = "cluster"
                listen = "127.0.0.1:7605"
                data_dir = "/srv/reckon"
                stores = ["orders"]
                bootstrap_expect = 3
                [discovery]
                seeds = ["127.0.0.1:7606"]
                "#,
        )?;
        let config = load_ok(&["--dev"])?;
        assert_eq!(config.mode, Mode::Single);
        assert_eq!(config.stores, vec!["default"]);
        assert_eq!(config.data_dir, PathBuf::from("./reckon-data"));
        assert_eq!(config.listen, loopback(7600));

        let config = load_ok(&["--config", "node.toml", "--dev"])?;
        assert_eq!(config.mode, Mode::Single);
        assert_eq!(config.stores, vec!["default"]);
        assert_eq!(config.data_dir, PathBuf::from("./reckon-data"));
        assert_eq!(config.listen, loopback(7600));

        let config = load_ok(&[
            "--config",
            "node.toml",
            "--dev",
            "--data-dir",
            "/tmp/mine",
            "--listen",
            "127.0.0.1:9000",
            "--store",
            "mine",
        ])?;
        assert_eq!(config.mode, Mode::Single);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/mine"));
        assert_eq!(config.listen, loopback(9000));
        assert_eq!(config.stores, vec!["mine"]);
        Ok(())
    });
}

#[test]
fn wrong_type_in_file_names_the_key_and_file() {
    jail(|jail| {
        jail.create_file("node.toml", "node_id = \"abc\"\n")?;
        let err = load_err(&["--config", "node.toml"]);
        let message = err.to_string();
        assert!(matches!(err, ConfigError::Figment { .. }), "{err:?}");
        assert!(
            message.starts_with(
                "config key \"node_id\": invalid type: found string \"abc\", expected u64"
            ),
            "{message}"
        );
        assert!(message.contains("node.toml"), "{message}");
        assert_eq!(err.key().as_deref(), Some("node_id"));

        jail.create_file("nested.toml", "[discovery]\nport = \"high\"\n")?;
        let message = load_err(&["--config", "nested.toml"]).to_string();
        assert!(
            message.starts_with("config key \"discovery.port\": invalid type"),
            "{message}"
        );
        Ok(())
    });
}

#[test]
fn metrics_listen_is_off_by_default_and_names_its_key_when_bad() {
    jail(|jail| {
        assert_eq!(load_ok(&[])?.metrics_listen, None);
        jail.set_env("RECKON_NODE_METRICS_LISTEN", "everywhere");
        let err = load_err(&[]);
        assert_eq!(err.key().as_deref(), Some("metrics_listen"), "{err}");
        assert!(
            err.to_string().contains("RECKON_NODE_METRICS_LISTEN"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn otel_endpoint_is_checked_and_names_its_key() {
    jail(|jail| {
        assert_eq!(load_ok(&[])?.otel, OtelConfig::default());
        jail.set_env("RECKON_NODE_OTEL__ENDPOINT", "collector:4318");
        let err = load_err(&[]);
        assert_eq!(err.key().as_deref(), Some("otel.endpoint"), "{err}");
        if cfg!(feature = "otel") {
            assert!(err.to_string().contains("not an http"), "{err}");
            jail.set_env(
                "RECKON_NODE_OTEL__ENDPOINT",
                "http://127.0.0.1:4318/v1/metrics",
            );
            assert_eq!(
                load_ok(&[])?.otel.endpoint.as_deref(),
                Some("http://127.0.0.1:4318/v1/metrics")
            );
        } else {
            assert!(err.to_string().contains("feature `otel`"), "{err}");
        }
        jail.clear_env();
        jail.set_env("RECKON_NODE_OTEL__INTERVAL_MS", "10");
        let err = load_err(&[]);
        assert_eq!(err.key().as_deref(), Some("otel.interval_ms"), "{err}");
        Ok(())
    });
}

#[test]
fn wrong_type_in_env_names_the_key_and_variable() {
    jail(|jail| {
        jail.set_env("RECKON_NODE_TIMEOUT_MS", "soon");
        let message = load_err(&[]).to_string();
        assert!(
            message.starts_with(
                "config key \"timeout_ms\": invalid type: found string \"soon\", expected u64"
            ),
            "{message}"
        );
        assert!(message.contains("RECKON_NODE_TIMEOUT_MS"), "{message}");
        Ok(())
    });
}

#[test]
fn bad_enum_value_names_the_key_and_choices() {
    jail(|jail| {
        jail.set_env("RECKON_NODE_DISCOVERY__METHOD", "gossip");
        let message = load_err(&[]).to_string();
        assert!(
            message.starts_with("config key \"discovery.method\": unknown variant"),
            "{message}"
        );
        assert!(message.contains("k8s_dns"), "{message}");
        Ok(())
    });
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    jail(|jail| {
        jail.create_file("top.toml", "nodeid = 3\n")?;
        let err = load_err(&["--config", "top.toml"]);
        assert!(
            err.to_string()
                .starts_with("config key \"nodeid\": unknown field"),
            "{err}"
        );
        assert_eq!(err.key().as_deref(), Some("nodeid"));

        jail.create_file("nested.toml", "[discovery]\nmethd = \"static\"\n")?;
        let err = load_err(&["--config", "nested.toml"]);
        assert!(
            err.to_string()
                .starts_with("config key \"discovery.methd\": unknown field"),
            "{err}"
        );

        jail.create_file("limits.toml", "[limits]\nevent_bytes = 1\n")?;
        let err = load_err(&["--config", "limits.toml"]);
        assert_eq!(err.key().as_deref(), Some("limits.event_bytes"), "{err}");

        jail.set_env("RECKON_NODE_LISTN", "127.0.0.1:1");
        let err = load_err(&[]);
        assert_eq!(err.key().as_deref(), Some("listn"), "{err}");
        assert!(err.to_string().contains("RECKON_NODE_LISTN"), "{err}");
        Ok(())
    });
}

#[test]
fn short_secret_is_rejected_without_showing_it() {
    jail(|jail| {
        jail.create_file("node.toml", "[discovery]\nsecret = \"hunter2\"\n")?;
        let err = load_err(&["--config", "node.toml"]);
        let message = err.to_string();
        assert!(
            message.starts_with("invalid value for key \"discovery.secret\""),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
        Ok(())
    });
}

#[test]
fn bad_store_names_are_rejected_by_index() {
    jail(|jail| {
        jail.create_file("node.toml", "stores = [\"default\", \"bad name!\"]\n")?;
        let message = load_err(&["--config", "node.toml"]).to_string();
        assert!(
            message.starts_with("invalid value for key \"stores[1]\": \"bad name!\""),
            "{message}"
        );

        let message = load_err(&["--store", "ok", "--store", ""]).to_string();
        assert!(message.contains("\"stores[1]\""), "{message}");

        let long = "s".repeat(STORE_NAME_BYTES_MAX + 1);
        let message = load_err(&["--store", &long]).to_string();
        assert!(message.contains("\"stores[0]\""), "{message}");

        let message = load_err(&["--store", "a", "--store", "a"]).to_string();
        assert!(message.contains("\"stores[1]\""), "{message}");

        jail.create_file("empty.toml", "stores = []\n")?;
        let err = load_err(&["--config", "empty.toml"]);
        assert_eq!(err.key().as_deref(), Some("stores"), "{err}");
        Ok(())
    });
}

#[test]
fn store_name_rule() {
    let max = "a".repeat(STORE_NAME_BYTES_MAX);
    for good in ["default", "a", "A-b_9", max.as_str()] {
        assert!(is_valid_store_name(good), "{good:?}");
    }
    let over = "a".repeat(STORE_NAME_BYTES_MAX + 1);
    for bad in ["", "a b", "a/b", "a.b", "é", "$all", over.as_str()] {
        assert!(!is_valid_store_name(bad), "{bad:?}");
    }
}

#[test]
fn invalid_values_name_their_keys() {
    type Break = fn(&mut NodeConfig);
    let cases: Vec<(&str, Break)> = vec![
        ("node_id", |c| c.node_id = 0),
        ("bootstrap_expect", |c| c.bootstrap_expect = 0),
        ("timeout_ms", |c| c.timeout_ms = 0),
        ("shutdown_grace_ms", |c| {
            c.shutdown_grace_ms = SHUTDOWN_GRACE_MS_MAX + 1
        }),
        ("data_dir", |c| c.data_dir = PathBuf::new()),
        ("advertise", |c| c.advertise = Some("nohost".into())),
        ("gaters[0]", |c| c.gaters = vec!["127.0.0.1:0".into()]),
        ("discovery.seeds[1]", |c| {
            c.discovery.seeds = vec!["a:1".into(), ":7600".into()]
        }),
        ("discovery.announce_ms", |c| c.discovery.announce_ms = 0),
        ("discovery.ttl_ms", |c| {
            c.discovery.ttl_ms = c.discovery.announce_ms
        }),
        ("discovery.resolve_ms", |c| c.discovery.resolve_ms = 0),
        ("discovery.dns_server", |c| {
            c.discovery.dns_server = Some(SocketAddr::from(([127, 0, 0, 1], 0)))
        }),
        ("discovery.multicast_interface", |c| {
            c.discovery.multicast_interface = Some(DEFAULT_MULTICAST_ADDR)
        }),
        ("log.level", |c| c.log.level = " ".into()),
        ("log.level", |c| c.log.level = "verbose".into()),
        ("log.level", |c| c.log.level = "info,reckon_db=loud".into()),
        ("log.retain_files", |c| c.log.retain_files = 0),
        ("raft.heartbeat_ms", |c| c.raft.heartbeat_ms = 0),
        // 4 MiB entries need 125 ms at the floor rate.
        ("raft.heartbeat_ms", |c| {
            c.raft.heartbeat_ms = 100;
            c.raft.election_timeout_min_ms = 300;
        }),
        ("raft.election_timeout_min_ms", |c| {
            c.raft.election_timeout_min_ms = c.raft.heartbeat_ms
        }),
        ("raft.election_timeout_max_ms", |c| {
            c.raft.election_timeout_max_ms = c.raft.election_timeout_min_ms
        }),
        ("write.pipeline_max", |c| c.write.pipeline_max = 0),
        ("write.queue_max", |c| c.write.queue_max = 1),
        ("storage.state_cache_mib", |c| c.storage.state_cache_mib = 0),
        ("storage.state_cache_mib", |c| {
            c.storage.state_cache_mib = STATE_CACHE_MIB_MAX + 1
        }),
    ];
    for (key, break_it) in cases {
        let mut config = NodeConfig::default();
        break_it(&mut config);
        let err = config.validate().expect_err(key);
        assert_eq!(err.key().as_deref(), Some(key), "{err}");
    }
}

#[test]
fn cluster_discovery_needs_its_method_keys() {
    let cluster = |method| {
        let mut config = NodeConfig {
            mode: Mode::Cluster,
            bootstrap_expect: 3,
            ..NodeConfig::default()
        };
        config.discovery.method = method;
        config
    };
    let err = cluster(DiscoveryMethod::Static)
        .validate()
        .expect_err("no seeds");
    assert_eq!(err.key().as_deref(), Some("discovery.seeds"), "{err}");
    let err = cluster(DiscoveryMethod::K8sDns)
        .validate()
        .expect_err("no service");
    assert_eq!(err.key().as_deref(), Some("discovery.service"), "{err}");
    cluster(DiscoveryMethod::Multicast)
        .validate()
        .expect("multicast needs nothing more");

    let mut config = cluster(DiscoveryMethod::Multicast);
    config.discovery.multicast_addr = Ipv4Addr::new(10, 0, 0, 1);
    let err = config.validate().expect_err("unicast group");
    assert_eq!(err.key().as_deref(), Some("discovery.multicast_addr"));

    let mut config = cluster(DiscoveryMethod::Static);
    config.discovery.seeds = vec!["127.0.0.1:7601".into()];
    config.validate().expect("static with seeds");
    let mut config = cluster(DiscoveryMethod::K8sDns);
    config.discovery.service = Some("reckon.reckon.svc.cluster.local".into());
    config.validate().expect("k8s_dns with service");
    // One expected voter can start alone.
    let mut config = cluster(DiscoveryMethod::Static);
    config.bootstrap_expect = 1;
    config.validate().expect("bootstrap_expect = 1");
}

#[test]
fn missing_config_file_names_the_path() {
    jail(|_| {
        let err = load_err(&["--config", "nowhere/node.toml"]);
        assert!(matches!(err, ConfigError::File { .. }), "{err:?}");
        assert!(err.to_string().contains("nowhere/node.toml"), "{err}");
        Ok(())
    });
}

#[test]
fn bad_toml_names_the_file() {
    jail(|jail| {
        jail.create_file("node.toml", "node_id = \n")?;
        let message = load_err(&["--config", "node.toml"]).to_string();
        assert!(message.contains("node.toml"), "{message}");
        Ok(())
    });
}

#[test]
fn example_config_loads_as_is_with_the_defaults() {
    jail(|_| {
        let config = load_ok(&["--config", EXAMPLE])?;
        let expected = NodeConfig {
            gaters: vec!["127.0.0.1:7700".to_owned()],
            ..NodeConfig::default()
        };
        assert_eq!(config, expected);
        Ok(())
    });
}

#[test]
fn print_config_masks_the_secret_and_reads_back() {
    jail(|jail| {
        let secret = "correct horse battery staple, at length";
        let mut config = NodeConfig::default();
        config.discovery.secret = Some(secret.to_owned());
        config.discovery.method = DiscoveryMethod::K8sDns;
        config.advertise = Some("node-1.reckon:7600".to_owned());

        let text = config.masked_toml().expect("prints");
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("secret = \"***\""), "{text}");
        assert!(text.contains("method = \"k8s_dns\""), "{text}");
        assert!(!format!("{config:?}").contains(secret));

        jail.create_file("printed.toml", &text)?;
        let back = load_ok(&["--config", "printed.toml"]);
        // "***" is too short to be a secret: the printed config is for
        // reading, and fails validation on purpose if fed back as is.
        assert!(back.is_err());
        let back: NodeConfig = Figment::from(Toml::string(&text)).extract()?;
        assert_eq!(back, config.masked());

        let plain = NodeConfig::default().masked_toml().expect("prints");
        assert!(!plain.contains("secret"), "{plain}");
        Ok(())
    });
}

#[test]
fn args_parse_repeated_flags() {
    let parsed = args(&[
        "--gater",
        "127.0.0.1:7700",
        "--gater",
        "127.0.0.1:7701",
        "--print-config",
    ]);
    assert_eq!(parsed.gaters, vec!["127.0.0.1:7700", "127.0.0.1:7701"]);
    assert!(parsed.print_config);
    assert!(NodeArgs::try_parse_from(["reckon-node", "--listen", "nope"]).is_err());
    use clap::CommandFactory;
    NodeArgs::command().debug_assert();
}

#[test]
fn a_non_loopback_listener_needs_tls_or_insecure() {
    jail(|jail| {
        let err = load_err(&["--listen", "0.0.0.0:7600"]);
        assert_eq!(err.key().as_deref(), Some("tls"), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("[tls]") && message.contains("insecure = true"),
            "names both ways out: {message}"
        );
        // Loopback needs neither.
        load_ok(&["--listen", "127.0.0.1:7600"])?;
        load_ok(&["--listen", "[::1]:7600"])?;
        jail.set_env("RECKON_NODE_INSECURE", "true");
        let config = load_ok(&["--listen", "0.0.0.0:7600"])?;
        assert!(config.insecure);
        jail.set_env("RECKON_NODE_INSECURE", "false");
        jail.create_file(
            "node.toml",
            "[tls]\nca = \"ca.crt\"\ncert = \"node-1.crt\"\nkey = \"node-1.key\"\n",
        )?;
        let config = load_ok(&["--config", "node.toml", "--listen", "0.0.0.0:7600"])?;
        let tls = config.tls.clone().expect("[tls]");
        assert_eq!(tls.key, std::path::PathBuf::from("node-1.key"));
        // --print-config shows where the key is, never what it holds.
        let printed = config.masked_toml().expect("toml");
        assert!(printed.contains("key = \"node-1.key\""), "{printed}");
        Ok(())
    });
}
