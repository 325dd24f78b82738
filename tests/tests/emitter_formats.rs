//! The real emitter's request formats and input errors, checked against what
//! lands in the TASKS stream (no workers, so the tasks stay there).

use bytes::Bytes;
use farm_e2e::{Farm, ids};
use farm_runtime::proto::Task;
use prost::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formats_headers_and_bad_input() {
    let mut farm = Farm::start("formats", &[]);
    farm.start_emitter();
    farm.wait_ready().await;

    // One task: body, id, deadline and attributes from headers.
    let (status, answer) = farm
        .submit(
            "raw body".into(),
            "text/plain",
            &[
                ("x-task-id", "one"),
                ("x-deadline-ms", "1500"),
                ("x-attr-user", "ann"),
            ],
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(ids(&answer, "ids"), vec!["one".to_string()]);

    // The same id again is de-duplicated by JetStream, and said so.
    let (status, answer) = farm
        .submit("raw body".into(), "text/plain", &[("x-task-id", "one")])
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(ids(&answer, "duplicates"), vec!["one".to_string()]);

    // A length-delimited protobuf batch; ids generated when missing.
    let mut body = Vec::new();
    for (id, payload) in [("pb-1", "x"), ("", "y")] {
        Task {
            id: id.into(),
            payload: Bytes::from(payload),
            ..Default::default()
        }
        .encode_length_delimited(&mut body)
        .expect("encode");
    }
    let resp = reqwest::Client::new()
        .post(format!("{}/", farm.emitter_url()))
        .header("content-type", "application/x-protobuf-delimited")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 202);
    let answer: serde_json::Value = resp.json().await.expect("json");
    let pb_ids = ids(&answer, "ids");
    assert_eq!(pb_ids.len(), 2);
    assert_eq!(pb_ids[0], "pb-1");
    assert!(!pb_ids[1].is_empty());

    // Bad input: 400 naming the line or header.
    let (status, answer) = farm.submit_ndjson("{\"payload\":1}\n{oops}\n").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("line 2")),
        "{answer}"
    );
    let (status, answer) = farm
        .submit("x".into(), "text/plain", &[("x-deadline-ms", "soon")])
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("x-deadline-ms")),
        "{answer}"
    );

    // What JetStream holds: three tasks, increasing seq, fields as sent.
    let (client, js) = farm.js().await;
    let stream = js
        .get_stream(farm.names.tasks_stream())
        .await
        .expect("tasks stream");
    // A work queue allows only the workers' consumer: read by sequence.
    let mut tasks = Vec::new();
    for seq in 1..=3 {
        let m = stream.get_raw_message(seq).await.expect("stored task");
        tasks.push(Task::decode(m.payload.clone()).expect("Task"));
    }
    assert_eq!(tasks[0].id, "one");
    assert_eq!(&tasks[0].payload[..], b"raw body");
    assert_eq!(tasks[0].content_type, "text/plain");
    assert_eq!(tasks[0].deadline_ms, 1500);
    assert_eq!(
        tasks[0].attributes.get("user").map(String::as_str),
        Some("ann")
    );
    assert_eq!(tasks[1].id, "pb-1");
    assert_eq!(tasks[2].id, pb_ids[1]);
    assert!(tasks[0].seq < tasks[1].seq && tasks[1].seq < tasks[2].seq);
    client.flush().await.expect("flush");
}
