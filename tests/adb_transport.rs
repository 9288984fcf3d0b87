//! `adb::transport::Session` over real TCP on loopback against a small
//! adbd built on the project's device-side core: the handshake with a key
//! the TV accepts, one it never accepts, shell v2 output and exit codes,
//! the fallback to `shell:` when the TV refuses v2, a request that times
//! out while others go on, a refused port, and a TV that hangs up.

use sitelink::adb::proto::{
    AdbKey, Banner, Device, DeviceConfig, DeviceEvent, Features, ShellPacket, shell::EXIT_MARKER,
};
use sitelink::adb::transport::{ConnectError, Handshake, OpError, Reply, Request, Session};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

fn key() -> AdbKey {
    static KEY: OnceLock<AdbKey> = OnceLock::new();
    KEY.get_or_init(|| AdbKey::generate(&mut rand::rngs::SysRng).expect("key"))
        .clone()
}

#[derive(Clone, Copy)]
struct Tv {
    /// Accept our key when it is offered (a technician pressed "Allow").
    accept: bool,
    /// Offer shell_v2 (Android 7+).
    v2: bool,
}

/// Serves one connection: `echo X` prints X, `exit N` exits N, `hang`
/// never answers, `bye` closes the whole connection.
async fn serve(listener: TcpListener, tv: Tv) {
    let (sock, _) = listener.accept().await.expect("accept");
    serve_stream(sock, tv).await;
}

async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(mut sock: S, tv: Tv) {
    let features = if tv.v2 {
        Features::new(["shell_v2"])
    } else {
        Features::new(Vec::<&str>::new())
    };
    let mut cfg = DeviceConfig::new(Banner::device("sim", "SIM TV", "sim", features));
    cfg.auth = true;
    let mut dev = Device::new(cfg);
    let mut buf = vec![0u8; 65536];
    loop {
        while let Some(out) = dev.poll_transmit() {
            if sock.write_all(&out).await.is_err() {
                return;
            }
        }
        let n = match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if dev.handle_bytes(&buf[..n]).is_err() {
            return;
        }
        while let Some(ev) = dev.poll_event() {
            match ev {
                DeviceEvent::KeyOffered { key, .. } if tv.accept => dev.accept_key(key),
                DeviceEvent::OpenRequested { id, service } => {
                    let (v2, cmd) = if let Some(c) = service.strip_prefix("shell,v2,raw:") {
                        (true, c.to_string())
                    } else if let Some(c) = service.strip_prefix("shell:") {
                        // `( CMD\n); echo "MARKER$?"`
                        let c = c.trim_start_matches("( ");
                        (false, c.split('\n').next().unwrap_or("").to_string())
                    } else {
                        let _ = dev.refuse(id);
                        continue;
                    };
                    if v2 && !tv.v2 {
                        let _ = dev.refuse(id);
                        continue;
                    }
                    if cmd == "bye" {
                        return;
                    }
                    dev.accept(id).expect("accept");
                    if cmd == "hang" {
                        continue;
                    }
                    let (out, code) = if let Some(text) = cmd.strip_prefix("echo ") {
                        (format!("{text}\n"), 0u8)
                    } else if let Some(n) = cmd.strip_prefix("exit ") {
                        (String::new(), n.parse().unwrap_or(255))
                    } else {
                        (String::new(), 127)
                    };
                    if v2 {
                        let mut bytes = ShellPacket::Stdout(out.into_bytes()).encode();
                        bytes.extend(ShellPacket::Exit(code).encode());
                        dev.write(id, &bytes).expect("write");
                    } else {
                        let text = format!("{out}{EXIT_MARKER}{code}\n");
                        dev.write(id, text.as_bytes()).expect("write");
                    }
                    dev.close(id).expect("close");
                }
                _ => {}
            }
        }
    }
}

async fn tv(tv: Tv) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(serve(listener, tv));
    port
}

async fn online(port: u16) -> Session<u32> {
    let mut s = Session::connect(
        "127.0.0.1",
        port,
        key(),
        "test@host",
        Duration::from_secs(3),
    )
    .await
    .expect("connect");
    // A first connection shows the key on the TV; this one accepts it.
    match s
        .handshake(Duration::from_secs(10))
        .await
        .expect("handshake")
    {
        Handshake::Online => {}
        Handshake::Unauthorized { .. } => {
            let until = tokio::time::Instant::now() + Duration::from_secs(10);
            assert!(s.wait_accepted(until).await.expect("accepted"));
        }
    }
    assert!(s.peer().is_some(), "online with the TV's banner");
    s
}

fn shell(cmd: &str) -> Request {
    Request::Shell {
        command: cmd.into(),
        limit: 4096,
    }
}

#[tokio::test]
async fn accepted_key_then_shell_v2_output_and_exit_codes_while_a_request_times_out() {
    let port = tv(Tv {
        accept: true,
        v2: true,
    })
    .await;
    let mut s = online(port).await;
    s.start(1, shell("hang"), Duration::from_millis(300))
        .map_err(|(_, e)| e)
        .expect("start");
    s.start(2, shell("echo hello"), Duration::from_secs(5))
        .map_err(|(_, e)| e)
        .expect("start");
    s.start(3, shell("exit 3"), Duration::from_secs(5))
        .map_err(|(_, e)| e)
        .expect("start");
    assert_eq!(s.in_flight(), 3);
    let mut results = HashMap::new();
    for _ in 0..3 {
        let d = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("bounded")
            .expect("session");
        results.insert(d.tag, d.result);
    }
    match &results[&2] {
        Ok(Reply::Shell(out)) => {
            assert_eq!(out.stdout, b"hello\n");
            assert_eq!(out.exit, Some(0));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&results[&3], Ok(Reply::Shell(o)) if o.exit == Some(3)));
    assert!(
        matches!(&results[&1], Err(OpError::Timeout(t)) if *t == Duration::from_millis(300)),
        "{:?}",
        results[&1]
    );
    assert_eq!(s.in_flight(), 0);
}

#[tokio::test]
async fn a_tv_without_shell_v2_is_asked_again_with_plain_shell() {
    let port = tv(Tv {
        accept: true,
        v2: false,
    })
    .await;
    let mut s = online(port).await;
    s.start(7, shell("exit 5"), Duration::from_secs(5))
        .map_err(|(_, e)| e)
        .expect("start");
    let d = s.next().await.expect("done");
    assert_eq!(d.tag, 7);
    // The exit status comes from the marker line, which is taken off.
    assert!(
        matches!(&d.result, Ok(Reply::Shell(o)) if o.exit == Some(5) && o.stdout.is_empty()),
        "{:?}",
        d.result
    );
    s.start(8, shell("echo legacy"), Duration::from_secs(5))
        .map_err(|(_, e)| e)
        .expect("start");
    let d = s.next().await.expect("done");
    assert!(matches!(&d.result, Ok(Reply::Shell(o)) if o.stdout == b"legacy\n"));
}

#[tokio::test]
async fn a_key_nobody_accepts_is_unauthorized_with_its_fingerprint() {
    let port = tv(Tv {
        accept: false,
        v2: true,
    })
    .await;
    let mut s: Session<u32> = Session::connect(
        "127.0.0.1",
        port,
        key(),
        "test@host",
        Duration::from_secs(3),
    )
    .await
    .expect("connect");
    let Handshake::Unauthorized { fingerprint } = s
        .handshake(Duration::from_secs(10))
        .await
        .expect("handshake")
    else {
        panic!("should be unauthorized");
    };
    assert_eq!(fingerprint, key().public_key().fingerprint());
    let until = tokio::time::Instant::now() + Duration::from_millis(300);
    assert!(!s.wait_accepted(until).await.expect("still open"));
}

#[tokio::test]
async fn a_refused_port_and_a_tv_that_hangs_up() {
    // A port nobody listens on: bind, note, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let err = Session::<u32>::connect("127.0.0.1", port, key(), "t", Duration::from_secs(3))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, ConnectError::Refused), "{err}");
    assert_eq!(err.state(), "refused");
    assert!(err.to_string().contains("network debugging"), "{err}");

    let port = tv(Tv {
        accept: true,
        v2: true,
    })
    .await;
    let mut s = online(port).await;
    s.start(1, shell("hang"), Duration::from_secs(30))
        .map_err(|(_, e)| e)
        .expect("start");
    s.start(2, shell("bye"), Duration::from_secs(30))
        .map_err(|(_, e)| e)
        .expect("start");
    let err = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("bounded")
        .expect_err("the TV hung up");
    assert!(matches!(err, ConnectError::Closed), "{err}");
    let failed = s.fail_all(&err.to_string());
    assert_eq!(failed.len(), 2);
    assert!(
        failed
            .iter()
            .all(|d| matches!(d.result, Err(OpError::Lost(_))))
    );
}

/// The session runs over any byte stream, not only TCP: this is where a TLS
/// stream (Android 11+ wireless debugging) goes in.
#[tokio::test]
async fn a_session_over_another_stream() {
    let (host, tv_side) = tokio::io::duplex(4096);
    tokio::spawn(serve_stream(
        tv_side,
        Tv {
            accept: true,
            v2: true,
        },
    ));
    let mut s: Session<u32, _> = Session::over(host, key(), "test@host");
    if let Handshake::Unauthorized { .. } = s
        .handshake(Duration::from_secs(10))
        .await
        .expect("handshake")
    {
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        assert!(s.wait_accepted(until).await.expect("accepted"));
    }
    s.start(1, shell("echo piped"), Duration::from_secs(5))
        .map_err(|(_, e)| e)
        .expect("start");
    let d = s.next().await.expect("done");
    assert!(
        matches!(&d.result, Ok(Reply::Shell(o)) if o.stdout == b"piped\n"),
        "{:?}",
        d.result
    );
}
