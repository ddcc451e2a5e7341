//! Bad input on the wire: garbage, truncated and oversized frames, unknown
//! API keys and versions close only the offending connection, with the
//! broker still serving everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use freshet_kafka::{Broker, BrokerSettings};
use freshet_log::{Log, LogOptions};

struct Running {
    address: std::net::SocketAddr,
    _stop: tokio::sync::watch::Sender<bool>,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let log = Arc::new(Log::open(dir.path(), LogOptions::default()).unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let address = runtime.block_on(async {
        let listener = freshet_kafka::listen("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let address = freshet_kafka::local_address(&listener).unwrap();
        let settings = BrokerSettings {
            node_id: 0,
            cluster_id: "test".into(),
            advertised_host: "127.0.0.1".into(),
            advertised_port: address.port(),
            auto_create_topics: true,
            default_partitions: 1,
        };
        let broker = Broker::start(log, settings, stopped.clone()).unwrap();
        freshet_kafka::serve(listener, Arc::new(broker), stopped);
        address
    });
    Running {
        address,
        _stop: stop,
        _runtime: runtime,
        _dir: dir,
    }
}

fn connect(address: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

fn frame(body: Vec<u8>) -> Vec<u8> {
    [(body.len() as i32).to_be_bytes().to_vec(), body].concat()
}

/// An ApiVersions v0 request frame.
fn api_versions(correlation_id: i32) -> Vec<u8> {
    frame(
        [
            vec![0, 18, 0, 0],
            correlation_id.to_be_bytes().to_vec(),
            vec![0xff, 0xff],
        ]
        .concat(),
    )
}

fn read_response(stream: &mut TcpStream) -> Vec<u8> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).unwrap();
    body
}

fn is_closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

#[test]
fn bad_frames_close_only_their_connection() {
    let broker = start();
    let mut healthy = connect(broker.address);
    healthy.write_all(&api_versions(1)).unwrap();
    assert_eq!(&read_response(&mut healthy)[0..4], &1i32.to_be_bytes());

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative size", (-5i32).to_be_bytes().to_vec()),
        (
            "oversized frame",
            (200 * 1024 * 1024i32).to_be_bytes().to_vec(),
        ),
        ("frame too short for a header", frame(vec![0, 18, 0, 0])),
        ("unknown API key", frame(vec![0x7f, 0x00, 0, 0, 0, 0, 0, 1])),
        (
            "unsupported version",
            frame(vec![0, 3, 0, 99, 0, 0, 0, 1, 0xff, 0xff]),
        ),
        (
            "garbage body",
            frame(vec![0, 0, 0, 3, 0, 0, 0, 1, 0x7f, 0xff, 1, 2]),
        ),
    ];
    for (name, bytes) in cases {
        let mut bad = connect(broker.address);
        bad.write_all(&bytes).unwrap();
        assert!(is_closed(&mut bad), "{name}: the connection stays open");
        // Others are undisturbed.
        healthy.write_all(&api_versions(2)).unwrap();
        assert_eq!(
            &read_response(&mut healthy)[0..4],
            &2i32.to_be_bytes(),
            "after {name}"
        );
    }

    // A truncated frame: the client hangs up mid-frame.
    let mut truncated = connect(broker.address);
    truncated.write_all(&100i32.to_be_bytes()).unwrap();
    truncated.write_all(&[0, 18, 0]).unwrap();
    drop(truncated);
    healthy.write_all(&api_versions(3)).unwrap();
    assert_eq!(&read_response(&mut healthy)[0..4], &3i32.to_be_bytes());
}

#[test]
fn an_unknown_api_versions_version_gets_error_35_and_the_ranges() {
    let broker = start();
    let mut stream = connect(broker.address);
    // ApiVersions v9 (a v2 header): the answer is in v0, which every client reads.
    stream
        .write_all(&frame(
            [
                vec![0, 18, 0, 9],
                7i32.to_be_bytes().to_vec(),
                vec![0xff, 0xff, 0],
            ]
            .concat(),
        ))
        .unwrap();
    let response = read_response(&mut stream);
    assert_eq!(&response[0..4], &7i32.to_be_bytes());
    assert_eq!(
        i16::from_be_bytes([response[4], response[5]]),
        35,
        "UNSUPPORTED_VERSION"
    );
    let count = i32::from_be_bytes(response[6..10].try_into().unwrap());
    assert!(count >= 8, "the supported ranges follow, got {count}");
    // The connection stays usable for the retry at a lower version.
    stream.write_all(&api_versions(8)).unwrap();
    assert_eq!(&read_response(&mut stream)[0..4], &8i32.to_be_bytes());
}
