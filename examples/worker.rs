//! A worker agent: takes tasks pushed from `tasks`, works on them, acks; a task that fails
//! is nacked (retried after the backoff, dead-lettered after max attempts); long work says
//! "in progress" so it is not redelivered meanwhile.
//!
//! `cargo run --example worker` next to a `cortex serve` on its defaults.

use std::time::Duration;

use cortex::client::{Client, ClientOptions, SubscribeOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect(ClientOptions::local("worker")).await?;
    let mut opts = SubscribeOptions::new("tasks");
    opts.group = Some(b"workers".to_vec()); // workers share the tasks
    opts.window = 4; // at most four tasks in hand
    let mut tasks = client.subscribe(opts).await?;
    while let Some(task) = tasks.next().await {
        let task = task?;
        println!(
            "task {} (attempt {}): {:?}",
            task.id, task.attempt, task.fields
        );
        // Long work: tell the broker we are still on it.
        task.in_progress().await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if task.fields.iter().any(|(k, _)| k == b"fail") {
            task.nack("could not do it").await?;
        } else {
            task.ack().await?;
        }
    }
    Ok(())
}
