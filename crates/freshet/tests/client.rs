//! The built-in client commands (`freshet topic`, `produce`, `consume`,
//! `group`) against the real server.

mod common;

use common::Freshet;

#[test]
fn topic_produce_consume_and_group_commands_work_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let freshet = Freshet::start(dir.path(), "");
    let run = |args: &[&str], input: &str| freshet.client(args, input);

    let out = run(
        &[
            "topic",
            "create",
            "orders",
            "-p",
            "3",
            "-c",
            "retention.ms=3600000",
        ],
        "",
    );
    assert!(
        out.contains("created topic orders with 3 partitions"),
        "{out}"
    );
    assert!(run(&["topic", "list"], "").contains("orders"));
    let described = run(&["topic", "describe", "orders"], "");
    assert!(described.contains("retention.ms = 3600000"), "{described}");

    run(
        &["produce", "orders", "-K", ":", "-H", "h=1", "-H", "h=2"],
        "k1:v1\nk2:v2\nk3:v3\nk4:v4\n",
    );
    let mut lines: Vec<String> = run(&["consume", "orders", "-e", "-f", "%k=%v [%h]"], "")
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "k1=v1 [h=1,h=2]",
            "k2=v2 [h=1,h=2]",
            "k3=v3 [h=1,h=2]",
            "k4=v4 [h=1,h=2]"
        ]
    );

    let first = run(&["consume", "orders", "-g", "readers", "-n", "3"], "");
    assert_eq!(first.lines().count(), 3);
    let rest = run(&["consume", "orders", "-g", "readers", "-e"], "");
    assert_eq!(
        rest.lines().count(),
        1,
        "the group resumes after its commits: {rest}"
    );
    let groups = run(&["group", "list"], "");
    assert!(groups.contains("readers"), "{groups}");
    let lag = run(&["group", "describe", "readers"], "");
    assert!(lag.contains("LAG"), "{lag}");

    run(&["topic", "grow", "orders", "-p", "5"], "");
    assert!(run(&["topic", "describe", "orders"], "").contains("5 partitions"));
    run(&["topic", "delete", "orders"], "");
    assert!(!run(&["topic", "list"], "").contains("orders"));
    let refused = freshet.client_output(&["topic", "create", "bad", "-p", "0"], "");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("InvalidPartitions"));
}
