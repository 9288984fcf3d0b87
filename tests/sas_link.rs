//! `sas::link` over real PTY pairs (made with `openpty`, no external tool)
//! and TCP on 127.0.0.1: frames go out whole, replies are framed by the idle
//! gap, and a lost port is reported and reopened by itself. The real serial
//! path needs hardware; its logic is unit-tested as pure functions
//! (termios flags, read-back, PARMRK unescaping).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sitelink::sas::link::{
    self, Cause, GapFramer, Line, LineEvent, LinkTiming, PortError, TransportKind,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EVENTUALLY: Duration = Duration::from_secs(10);

/// A frame gap far above any scheduling hiccup and far below the gap the
/// tests leave between frames; reconnects quick enough for a test.
fn timing() -> LinkTiming {
    LinkTiming {
        adapter_slack: Duration::from_millis(55),
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(300),
        ..LinkTiming::default()
    }
}

/// Both ends of a PTY. The test keeps the slave open too, so the master
/// never reads EIO while the line has its end closed.
struct Pty {
    master: File,
    _slave: File,
    slave_path: PathBuf,
}

impl Pty {
    fn new() -> Pty {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two descriptors; name, termios and window
        // size may be null.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors are open and owned by nothing else.
        let (master, slave) = unsafe {
            (
                File::from(OwnedFd::from_raw_fd(master)),
                File::from(OwnedFd::from_raw_fd(slave)),
            )
        };
        let slave_path =
            std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd())).expect("slave name");
        // SAFETY: fcntl on an open descriptor.
        unsafe {
            let flags = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
            assert!(libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) >= 0);
        }
        Pty {
            master,
            _slave: slave,
            slave_path,
        }
    }

    /// Reads from the master until `n` bytes came or the time is up.
    fn read(&mut self, n: usize, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while got.len() < n && Instant::now() < deadline {
            match self.master.read(&mut buf) {
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("master read: {e}"),
            }
        }
        got
    }
}

/// Points `link` at `target`, replacing what it pointed to in one step.
fn point(link: &Path, target: &Path) {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).expect("symlink");
    std::fs::rename(&tmp, link).expect("rename symlink");
}

async fn wait_for(
    line: &mut Line,
    what: &str,
    mut want: impl FnMut(&LineEvent) -> bool,
) -> LineEvent {
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    for _ in 0..10_000 {
        match tokio::time::timeout_at(deadline, line.next_event()).await {
            Ok(Some(event)) if want(&event) => return event,
            Ok(Some(_)) => {}
            Ok(None) => panic!("line stopped while waiting for {what}"),
            Err(_) => panic!("no {what} within {EVENTUALLY:?}"),
        }
    }
    panic!("too many events while waiting for {what}");
}

async fn up(line: &mut Line, kind: TransportKind) {
    let event = wait_for(line, "Up", |e| !matches!(e, LineEvent::Bytes(_))).await;
    assert!(
        matches!(event, LineEvent::Up { kind: k } if k == kind),
        "{event:?}"
    );
}

async fn down(line: &mut Line) -> PortError {
    match wait_for(line, "Down", |e| matches!(e, LineEvent::Down(_))).await {
        LineEvent::Down(e) => e,
        _ => unreachable!(),
    }
}

/// Collects `n` frames by the idle gap from the line's chunks and quiets.
async fn frames(line: &mut Line, n: usize) -> Vec<Vec<u8>> {
    let mut framer = GapFramer::new(timing().frame_gap());
    let mut out = Vec::new();
    let mut last_at = None;
    while out.len() < n {
        let event = wait_for(line, "a frame", |e| {
            matches!(e, LineEvent::Bytes(_) | LineEvent::Quiet { .. })
        })
        .await;
        let frame = match &event {
            LineEvent::Bytes(chunk) => {
                assert!(chunk.wakeup.is_empty(), "no 9th bit here: {chunk:?}");
                assert!(
                    last_at.is_none_or(|t| t <= chunk.at),
                    "arrival times in order"
                );
                last_at = Some(chunk.at);
                framer.push(chunk)
            }
            _ => framer.quiet(),
        };
        out.extend(frame.map(|f| f.bytes));
    }
    out
}

const GP: [u8; 1] = [0x81];
/// LP 2F: game 0, meters 00, 01, 0C (CRC from the protocol document).
const LP_2F: [u8; 10] = [0x01, 0x2F, 0x05, 0x00, 0x00, 0x00, 0x01, 0x0C, 0xFB, 0x3C];
/// Bytes a cooked terminal would eat or change: CR, LF, XON, XOFF, FF, ^C.
const AWKWARD: [u8; 8] = [0x01, 0x0D, 0x0A, 0x11, 0x13, 0xFF, 0x03, 0x00];
/// An RTE event frame, then a meter reply, each sent in pieces.
const REPLY_1: [&[u8]; 3] = [&[0x01, 0xFF], &[0x6F], &[0xED, 0x3E]];
const REPLY_2: [&[u8]; 2] = [&[0x01, 0x1A, 0x00, 0x00], &[0x00, 0x05, 0x12, 0x34]];

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[tokio::test]
async fn pty_frames_go_out_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("line-1");
    let mut pty = Pty::new();
    point(&path, &pty.slave_path);
    let mut line = Line::spawn(path.to_str().expect("utf-8"), timing()).expect("spawn");
    up(&mut line, TransportKind::Pty).await;
    for frame in [&GP[..], &LP_2F, &AWKWARD] {
        line.send(frame).await.expect("send");
        assert_eq!(pty.read(frame.len(), EVENTUALLY), frame);
    }
    // Nothing more than what was sent (no echo, no translation).
    assert!(pty.read(1, Duration::from_millis(100)).is_empty());
}

#[tokio::test]
async fn pty_replies_are_framed_by_the_idle_gap() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("line-1");
    let mut pty = Pty::new();
    point(&path, &pty.slave_path);
    let mut line = Line::spawn(path.to_str().expect("utf-8"), timing()).expect("spawn");
    up(&mut line, TransportKind::Pty).await;
    for reply in [&REPLY_1[..], &REPLY_2] {
        for piece in reply {
            pty.master.write_all(piece).expect("write");
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    assert_eq!(
        frames(&mut line, 2).await,
        [concat(&REPLY_1), concat(&REPLY_2)]
    );
}

#[tokio::test]
async fn tcp_frames_go_out_whole_and_replies_are_framed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = format!("tcp://{}", listener.local_addr().expect("addr"));
    let mut line = Line::spawn(&port, timing()).expect("spawn");
    let (mut peer, _) = tokio::time::timeout(EVENTUALLY, listener.accept())
        .await
        .expect("connects in time")
        .expect("accept");
    up(&mut line, TransportKind::Tcp).await;
    for frame in [&GP[..], &LP_2F, &AWKWARD] {
        line.send(frame).await.expect("send");
        let mut got = vec![0; frame.len()];
        tokio::time::timeout(EVENTUALLY, peer.read_exact(&mut got))
            .await
            .expect("arrives in time")
            .expect("read");
        assert_eq!(got, frame);
    }
    for reply in [&REPLY_1[..], &REPLY_2] {
        for piece in reply {
            peer.write_all(piece).await.expect("write");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(
        frames(&mut line, 2).await,
        [concat(&REPLY_1), concat(&REPLY_2)]
    );
}

#[tokio::test]
async fn pty_unplugged_is_reported_and_reopened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("line-1");
    let port = path.to_str().expect("utf-8").to_owned();
    let pty = Pty::new();
    point(&path, &pty.slave_path);
    let mut line = Line::spawn(&port, timing()).expect("spawn");
    up(&mut line, TransportKind::Pty).await;

    // The far end goes away, as when a simulator stops.
    drop(pty);
    let e = down(&mut line).await;
    assert_eq!(e.port(), port);
    assert!(
        matches!(e.cause(), Some(Cause::Unplugged | Cause::Vanished)),
        "{e}"
    );
    assert!(matches!(line.send(&GP).await, Err(PortError::Down { .. })));

    // It comes back on a new PTY under the same path.
    let mut pty = Pty::new();
    point(&path, &pty.slave_path);
    up(&mut line, TransportKind::Pty).await;
    line.send(&LP_2F).await.expect("send after reopen");
    assert_eq!(pty.read(LP_2F.len(), EVENTUALLY), LP_2F);
}

#[tokio::test]
async fn pty_path_removed_is_reported_and_reopened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("line-1");
    let mut pty = Pty::new();
    point(&path, &pty.slave_path);
    let mut line = Line::spawn(path.to_str().expect("utf-8"), timing()).expect("spawn");
    up(&mut line, TransportKind::Pty).await;

    std::fs::remove_file(&path).expect("remove link");
    let e = down(&mut line).await;
    assert_eq!(e.cause(), Some(Cause::Vanished), "{e}");
    assert!(e.to_string().contains("line-1"), "{e}");

    point(&path, &pty.slave_path);
    up(&mut line, TransportKind::Pty).await;
    line.send(&GP).await.expect("send after reopen");
    assert_eq!(pty.read(1, EVENTUALLY), GP);
}

#[tokio::test]
async fn tcp_peer_closed_is_reported_and_reconnected() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = format!("tcp://{}", listener.local_addr().expect("addr"));
    let mut line = Line::spawn(&port, timing()).expect("spawn");
    let accept = async || {
        tokio::time::timeout(EVENTUALLY, listener.accept())
            .await
            .expect("connects in time")
            .expect("accept")
            .0
    };
    let peer = accept().await;
    up(&mut line, TransportKind::Tcp).await;

    drop(peer);
    let e = down(&mut line).await;
    assert_eq!(e.cause(), Some(Cause::PeerClosed), "{e}");
    assert_eq!(e.port(), port);

    let mut peer = accept().await;
    up(&mut line, TransportKind::Tcp).await;
    line.send(&LP_2F).await.expect("send after reconnect");
    let mut got = [0; LP_2F.len()];
    tokio::time::timeout(EVENTUALLY, peer.read_exact(&mut got))
        .await
        .expect("arrives in time")
        .expect("read");
    assert_eq!(got, LP_2F);
}

#[tokio::test]
async fn tcp_server_that_starts_late_is_reached() {
    // A port that nothing listens on (until later).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut line = Line::spawn(&format!("tcp://{addr}"), timing()).expect("spawn");
    let e = down(&mut line).await;
    assert_eq!(e.cause(), Some(Cause::Refused), "{e}");

    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let _peer = tokio::time::timeout(EVENTUALLY, listener.accept())
        .await
        .expect("reconnects in time")
        .expect("accept");
    up(&mut line, TransportKind::Tcp).await;
}

#[tokio::test]
async fn open_picks_the_transport_and_names_the_port_in_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pty = Pty::new();
    let link_path = dir.path().join("egm-link");
    point(&link_path, &pty.slave_path);
    for path in [&pty.slave_path, &link_path] {
        let t = link::open(path.to_str().expect("utf-8"), &timing()).expect("open pty");
        assert_eq!(t.kind(), TransportKind::Pty);
        assert!(!t.kind().carries_wakeup());
    }

    let plain = dir.path().join("not-a-tty");
    std::fs::write(&plain, b"x").expect("write");
    let plain = plain.to_str().expect("utf-8");
    assert!(matches!(
        link::open(plain, &timing()),
        Err(PortError::NotATty { port }) if port == plain
    ));

    for bad in ["tcp://host-without-port", "rfc2217://h:1", ""] {
        assert!(matches!(
            Line::spawn(bad, timing()),
            Err(PortError::BadPort { port, .. }) if port == bad
        ));
    }

    // A missing adapter is not a start-up failure: it is down, and retried.
    let missing = "/dev/serial/by-id/usb-sitelink-test-absent-if00-port0";
    let mut line = Line::spawn(missing, timing()).expect("spawn");
    let e = down(&mut line).await;
    assert_eq!(e.cause(), Some(Cause::NotPresent));
    assert!(e.to_string().contains(missing), "{e}");
    assert!(e.to_string().contains("/dev/serial/by-id/"), "{e}");
}

#[tokio::test]
async fn a_new_reason_while_down_is_reported_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("line-1");
    let mut line = Line::spawn(path.to_str().expect("utf-8"), timing()).expect("spawn");
    assert_eq!(down(&mut line).await.cause(), Some(Cause::NotPresent));
    // Something that is not a port appears there: a new reason.
    std::fs::write(&path, b"x").expect("write");
    assert!(matches!(down(&mut line).await, PortError::NotATty { .. }));
    let mut pty = Pty::new();
    point(&path, &pty.slave_path);
    up(&mut line, TransportKind::Pty).await;
    line.send(&GP).await.expect("send");
    assert_eq!(pty.read(1, EVENTUALLY), GP);
}
