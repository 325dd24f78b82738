//! With `COLLECTOR_ORDERED=true` the OUTPUT stream holds results in `seq`
//! order although workers finish them out of order.

use std::collections::HashSet;

use farm_e2e::{Farm, WAIT, ids};
use farm_runtime::proto::TaskResult;
use prost::Message;

const TASKS: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_output_follows_seq() {
    let mut farm = Farm::start("ordered", &[]);
    farm.start_collector_with(&[("COLLECTOR_ORDERED", "true")]);
    farm.start_emitter();
    farm.start_workers(3, &[("FARM_CONCURRENCY", "4")]);
    farm.wait_ready().await;

    // Uneven service times (0..6 ms) so completion order differs from seq.
    let body: String = (0..TASKS)
        .map(|i| {
            format!(
                "{{\"id\":\"o-{i}\",\"payload\":{{\"sleep_ms\":{}}}}}\n",
                (i * 7) % 6
            )
        })
        .collect();
    let (status, answer) = farm.submit_ndjson(&body).await;
    assert_eq!(status, 202, "{answer}");
    let accepted: HashSet<String> = ids(&answer, "ids").into_iter().collect();

    farm.wait_completed(TASKS as u64, WAIT).await;
    let out = farm.read_output().await;
    let seqs: Vec<u64> = out.iter().map(|e| e.result.seq).collect();
    assert_eq!(out.len(), TASKS);
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "not in seq order: {seqs:?}"
    );
    let got: HashSet<String> = out.iter().map(|e| e.result.task_id.clone()).collect();
    assert_eq!(got, accepted);

    // The workers really did finish out of order (else this test proves
    // nothing): RESULTS, in completion order, is not sorted by seq.
    let (client, js) = farm.js().await;
    let results = js
        .get_stream(farm.names.results_stream())
        .await
        .expect("results");
    let mut completion = Vec::new();
    for s in 1..=TASKS as u64 {
        let m = results.get_raw_message(s).await.expect("result");
        completion.push(
            TaskResult::decode(m.payload.clone())
                .expect("TaskResult")
                .seq,
        );
    }
    assert!(
        completion.windows(2).any(|w| w[0] > w[1]),
        "workers finished in seq order"
    );
    client.flush().await.expect("flush");
}
