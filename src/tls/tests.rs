//! The PEM loaders against certificates made at test time: good files load, and every
//! kind of bad file is an error naming the key and the file, never a panic, and never
//! showing the file's content.

use super::test_certs::{s, Certs};
use super::*;

fn server(c: &Certs, client_ca: Option<&std::path::Path>) -> ServerTlsCfg {
    ServerTlsCfg {
        cert_file: s(&c.server_cert),
        key_file: s(&c.server_key),
        client_ca_file: client_ca.map(s),
    }
}

fn client(c: &Certs) -> TlsCfg {
    TlsCfg {
        ca_file: Some(s(&c.ca)),
        cert_file: Some(s(&c.client_cert)),
        key_file: Some(s(&c.client_key)),
        ..Default::default()
    }
}

#[test]
fn good_files_make_server_and_client_configs() {
    let c = Certs::new();
    let cfg = server_config(&server(&c, None), Alpn::Grpc).unwrap();
    assert_eq!(cfg.alpn_protocols, vec![b"h2".to_vec()]);
    let cfg = server_config(&server(&c, Some(&c.ca)), Alpn::Http).unwrap();
    assert_eq!(cfg.alpn_protocols.len(), 2);
    client_config(&client(&c)).unwrap();
    let cert = s(&c.client_cert);
    let key = s(&c.client_key);
    let ca = s(&c.ca);
    assert!(check_files(Some(&cert), Some(&key), Some(("ca_file", &ca))).is_empty());
    let skip = TlsCfg {
        insecure_skip_verify: true,
        ..Default::default()
    };
    client_config(&skip).unwrap();
}

#[test]
fn a_missing_file_names_the_key_and_the_path() {
    let c = Certs::new();
    let mut cfg = server(&c, None);
    cfg.cert_file = "/nonexistent/server.pem".into();
    let e = server_config(&cfg, Alpn::Http).unwrap_err();
    assert_eq!(e.field, "cert_file");
    assert_eq!(e.path.as_deref(), Some("/nonexistent/server.pem"));
    assert!(e.reason.starts_with("cannot read it"), "{e}");
    assert!(
        e.to_string()
            .starts_with("cert_file \"/nonexistent/server.pem\": cannot read it"),
        "{e}"
    );
}

#[test]
fn files_that_are_not_what_they_should_be() {
    let c = Certs::new();
    let garbage = s(&c.write("garbage.pem", "hello, not a certificate\n"));
    let broken = s(&c.write(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
    ));
    let encrypted = s(&c.write(
        "enc.key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    ));
    let err = |cert: &str, key: &str, ca: Option<&str>| {
        let cfg = ServerTlsCfg {
            cert_file: cert.into(),
            key_file: key.into(),
            client_ca_file: ca.map(String::from),
        };
        server_config(&cfg, Alpn::Http).unwrap_err()
    };
    let (cert, key) = (s(&c.server_cert), s(&c.server_key));

    let e = err(&garbage, &key, None);
    assert_eq!((e.field, e.path.as_deref()), ("cert_file", Some(&*garbage)));
    assert!(e.reason.contains("no certificate in it"), "{e}");

    let e = err(&broken, &key, None);
    assert_eq!(e.field, "cert_file");
    assert!(e.reason.starts_with("not valid PEM"), "{e}");

    let e = err(&cert, &cert, None);
    assert_eq!(e.field, "key_file");
    assert!(e.reason.contains("no private key in it"), "{e}");

    let e = err(&cert, &encrypted, None);
    assert!(e.reason.contains("encrypted"), "{e}");

    let e = err(&cert, &s(&c.client_key), None);
    assert_eq!(e.field, "key_file");
    assert!(
        e.reason.contains("does not belong to the certificate"),
        "{e}"
    );

    let e = err(&cert, &key, Some(&garbage));
    assert_eq!(e.field, "client_ca_file");

    let big = s(&c.write("big.pem", &"x".repeat(2 << 20)));
    let e = err(&big, &key, None);
    assert!(e.reason.contains("larger than 1 MiB"), "{e}");
}

#[test]
fn check_files_reports_every_file_at_once() {
    let c = Certs::new();
    let (cert, client_key) = (s(&c.client_cert), s(&c.server_key));
    let e = check_files(Some(&cert), Some(&client_key), None);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].field, "key_file");
    assert!(e[0].reason.contains("does not belong"), "{}", e[0]);
    let e = check_files(
        Some("/nonexistent/c.pem"),
        Some(&cert),
        Some(("client_ca_file", "/nonexistent/ca.pem")),
    );
    let fields: Vec<_> = e.iter().map(|e| e.field).collect();
    assert_eq!(fields, ["cert_file", "key_file", "client_ca_file"]);
    assert!(check_files(None, None, None).is_empty());
    assert!(server_name("tempo.observability").is_ok());
    assert!(server_name("10.0.0.1").is_ok());
    assert_eq!(
        server_name("not a name").unwrap_err().field,
        "server_name_override"
    );
}

#[test]
fn errors_never_show_key_material() {
    let c = Certs::new();
    let key = std::fs::read_to_string(&c.server_key).unwrap();
    let body: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut cfg = server(&c, None);
    cfg.cert_file = s(&c.client_cert);
    let e = server_config(&cfg, Alpn::Http).unwrap_err();
    // The key file used as a certificate and as a CA bundle: errors, without its lines.
    let as_cert = ServerTlsCfg {
        cert_file: s(&c.server_key),
        ..server(&c, None)
    };
    let e2 = server_config(&as_cert, Alpn::Http).unwrap_err();
    let e3 = client_config(&TlsCfg {
        ca_file: Some(s(&c.server_key)),
        ..Default::default()
    })
    .unwrap_err();
    for shown in [e, e2, e3]
        .iter()
        .flat_map(|e| [e.to_string(), format!("{e:?}")])
    {
        for line in &body {
            assert!(!shown.contains(line), "{shown}");
        }
    }
}
