//! Name parsing (`kind:address`), table-driven.

use ipcall::{Error, ErrorKind, Kind, Name, Server};

#[test]
fn valid_names() {
    let long_path = format!("unix:/{}", "a".repeat(106));
    let cases: &[(&str, Kind, &str, bool)] = &[
        ("mem:jobs", Kind::Mem, "jobs", false),
        ("mem:with:colons and spaces", Kind::Mem, "with:colons and spaces", false),
        ("unix:/run/user/1000/app.sock", Kind::Unix, "/run/user/1000/app.sock", false),
        ("unix:relative.sock", Kind::Unix, "relative.sock", false),
        ("unix:@abstract", Kind::Unix, "@abstract", true),
        ("pipe:/tmp/app.pipe", Kind::Pipe, "/tmp/app.pipe", false),
        ("shm:/tmp/app.shm", Kind::Shm, "/tmp/app.shm", false),
        ("shm:@rendezvous", Kind::Shm, "@rendezvous", true),
        (&long_path, Kind::Unix, &long_path[5..], false),
    ];
    for &(text, kind, address, is_abstract) in cases {
        let name = Name::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(name.kind(), kind, "{text}");
        assert_eq!(name.address(), address, "{text}");
        assert_eq!(name.as_str(), text);
        assert_eq!(name.is_abstract(), is_abstract, "{text}");
        assert_eq!(name.to_string(), text);
        assert_eq!(name.path().is_some(), kind != Kind::Mem && !is_abstract, "{text}");
    }
}

#[test]
fn invalid_names() {
    let too_long_socket = format!("unix:/{}", "a".repeat(107));
    let too_long_abstract = format!("unix:@{}", "a".repeat(108));
    let too_long_shm = format!("shm:/{}", "b".repeat(200));
    let too_long_pipe = format!("pipe:/{}", "c".repeat(4000));
    let too_long_any = format!("mem:{}", "d".repeat(4093));
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("jobs", "missing `kind:`"),
        ("tcp:127.0.0.1:80", "unknown transport"),
        ("MEM:jobs", "unknown transport"),
        ("mem:", "empty address"),
        ("unix:", "empty address"),
        ("unix:@", "empty abstract"),
        ("mem:a\0b", "NUL"),
        ("unix:/tmp/a\nb", "control character"),
        ("pipe:@x", "abstract namespace is for sockets"),
        (&too_long_socket, "107 bytes"),
        (&too_long_abstract, "107 bytes"),
        (&too_long_shm, "107 bytes"),
        (&too_long_pipe, "4000 bytes"),
        (&too_long_any, "4096 bytes"),
    ];
    for &(text, why) in cases {
        match Name::parse(text) {
            Err(Error::InvalidName { name, reason }) => {
                assert_eq!(&*name, text);
                assert!(reason.contains(why), "{text:?}: reason {reason:?} should mention {why:?}");
            }
            other => panic!("{text:?}: expected InvalidName, got {other:?}"),
        }
        // The public constructors refuse it the same way, without panicking.
        assert_eq!(Server::bind(text).unwrap_err().kind(), ErrorKind::InvalidName, "{text:?}");
        assert_eq!(ipcall::Client::connect(text).unwrap_err().kind(), ErrorKind::InvalidName, "{text:?}");
    }
}

#[test]
fn kinds_parse_with_or_without_colon() {
    for kind in Kind::ALL {
        assert_eq!(kind.as_str().parse::<Kind>().unwrap(), kind);
        assert_eq!(format!("{kind}:").parse::<Kind>().unwrap(), kind);
    }
    assert_eq!("tcp".parse::<Kind>().unwrap_err().kind(), ErrorKind::InvalidName);
}

#[test]
fn unique_names_of_every_kind_are_private_and_unguessable() {
    for kind in Kind::ALL {
        let a = Name::unique(kind).unwrap();
        let b = Name::unique(kind).unwrap();
        assert_eq!(a.kind(), kind);
        assert_ne!(a, b);
        let hex: String = a.address().chars().filter(char::is_ascii_hexdigit).collect();
        assert!(hex.len() >= 32, "{a}: 128 random bits expected");
        if let Some(path) = a.path() {
            let dir = path.parent().unwrap();
            assert_eq!(dir, ipcall::runtime_dir().unwrap());
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700);
        }
    }
}

#[test]
fn binding_under_a_missing_directory_is_an_io_error_naming_the_cause() {
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let name = format!("{kind}:/nonexistent-ipcall-test-dir/{}/endpoint", std::process::id());
        match Server::bind(&name) {
            Err(e @ Error::Io { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&name) && text.contains("No such file"), "{kind}: {text}");
            }
            other => panic!("{kind}: expected Io, got {other:?}"),
        }
    }
}
