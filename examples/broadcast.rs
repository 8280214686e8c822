//! A broadcast listener: every agent subscribes to `announcements` with a group of its own
//! (the default: the agent's name), so each one sees every message.
//!
//! `cargo run --example broadcast -- red` (and `-- pink` in another terminal).

use cortex::client::{Client, ClientOptions, Start, SubscribeOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let me = std::env::args().nth(1).unwrap_or_else(|| "listener".into());
    let client = Client::connect(ClientOptions::local(&me)).await?;
    let mut opts = SubscribeOptions::new("announcements");
    opts.from = Start::New;
    let mut sub = client.subscribe(opts).await?;
    while let Some(d) = sub.next().await {
        let d = d?;
        println!("[{me}] {} {:?}", d.id, d.fields);
        d.ack().await?;
    }
    Ok(())
}
