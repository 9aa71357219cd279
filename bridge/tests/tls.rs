//! The bridge pair over mutual TLS on 127.0.0.1: the TLS settings are
//! Zenoh's own, passed through the Zenoh config file; the certificates
//! are made at test time.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use ringbus::broker::EmbeddedBroker;
use ringbus::client::{SubscribeOptions, TopicConfig};
use ringbus::ring::Start;
use ringbus_zenoh::Bridge;

/// A CA, and a certificate for 127.0.0.1 / localhost signed by it, as
/// PEM files in `dir`: ca.pem, cert.pem, key.pem.
fn certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "ringbus-zenoh test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "bridge");
    let cert = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

/// A Zenoh config file for one side of the mutual-TLS pair.
fn tls_config(dir: &Path, name: &str) -> std::path::PathBuf {
    let p = |f: &str| dir.join(f).display().to_string();
    let json = format!(
        r#"{{
  scouting: {{ multicast: {{ enabled: false }} }},
  transport: {{ link: {{ tls: {{
    root_ca_certificate: "{ca}",
    listen_private_key: "{key}",
    listen_certificate: "{cert}",
    connect_private_key: "{key}",
    connect_certificate: "{cert}",
    enable_mtls: true,
  }} }} }},
}}"#,
        ca = p("ca.pem"),
        key = p("key.pem"),
        cert = p("cert.pem"),
    );
    let path = dir.join(name);
    std::fs::write(&path, json).unwrap();
    path
}

#[test]
fn the_pair_runs_over_mutual_tls() {
    let dir = std::env::temp_dir().join(format!("ringbus-zenoh-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let a = EmbeddedBroker::start().unwrap();
    let b = EmbeddedBroker::start().unwrap();
    let ep = format!("tls/127.0.0.1:{}", free_port());

    let mut sx = settings(a.socket(), &["md.>"], &[]);
    sx.zenoh_config = Some(tls_config(&dir, "x.json5"));
    sx.listen = vec![ep.clone()];
    let x = Bridge::start(sx.clone(), sx.zenoh_config().unwrap()).unwrap();
    let mut sy = settings(b.socket(), &[], &["md.>"]);
    sy.zenoh_config = Some(tls_config(&dir, "y.json5"));
    sy.connect = vec![ep.clone()];
    let y = Bridge::start(sy.clone(), sy.zenoh_config().unwrap()).unwrap();

    let (ca, cb) = (a.client().unwrap(), b.client().unwrap());
    let opts = SubscribeOptions {
        start: Start::Earliest,
        ..SubscribeOptions::default()
    };
    let mut sub = cb.subscriber("md.>", opts).unwrap();
    let mut probe = ca.publisher("md.probe", TopicConfig::default()).unwrap();
    eventually("the TLS peers to meet", || {
        probe.publish(b"probe", 0).unwrap();
        recv_for(&mut sub, Duration::from_millis(50))
            .into_iter()
            .next()
    });
    let cfg = TopicConfig {
        max_message_size: 64 << 10,
        capacity: 256,
        mode: ringbus::client::Mode::Backpressure,
        max_subscribers: 16,
    };
    let mut p = ca.publisher("md.secure", cfg).unwrap();
    let n = 500u64;
    for i in 0..n {
        p.publish(&payload(0, i, size_of(i)), i).unwrap();
        if i == 0 {
            // B's subscriber holds the importer's ring before the rest.
            while recv(&mut sub).topic != "md.secure" {}
        }
    }
    let mut next = 1u64;
    while next < n {
        let g = recv(&mut sub);
        if g.topic != "md.secure" {
            continue;
        }
        assert_eq!(g.tag, next);
        assert!(
            g.payload == payload(0, next, size_of(next)),
            "message {next} differs"
        );
        next += 1;
    }
    assert_eq!(x.stats().snapshot().export_lagged, 0);
    assert!(y.stats().snapshot().imported >= n);

    // A peer that trusts the CA but has no certificate of its own is not
    // let in (mutual TLS).
    let mut c = zenoh::Config::default();
    c.insert_json5(
        "transport/link/tls/root_ca_certificate",
        &format!("{:?}", dir.join("ca.pem").display().to_string()),
    )
    .unwrap();
    c.insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    c.insert_json5("connect/endpoints", &format!("[\"{ep}\"]"))
        .unwrap();
    c.insert_json5("connect/timeout_ms", "0").unwrap();
    use zenoh::Wait;
    let intruder = zenoh::open(c).wait();
    if let Ok(s) = &intruder {
        // In peer mode a session may open without peers: it must not have one.
        assert!(
            s.info().peers_zid().wait().next().is_none(),
            "an untrusted peer got in"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
