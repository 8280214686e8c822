//! A requester: asks agent `pink` a question and prints every part of the answer
//! ("working on it", then the result), or the timeout / no-responders error.
//!
//! `cargo run --example requester` (with `cortex reply pink -- cat` running).

use std::time::Duration;

use cortex::client::{Client, ClientOptions, ErrorCode};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect(ClientOptions::local("harold")).await?;
    let ask = vec![(b"question".to_vec(), b"is the build green?".to_vec())];
    match client
        .request_parts("pink", ask, Duration::from_secs(30))
        .await
    {
        Ok(mut parts) => {
            while let Some(part) = parts.next().await {
                let part = part?;
                println!("{:?} from {:?}: {:?}", part.kind, part.from, part.fields);
            }
        }
        Err(e) if e.code() == Some(ErrorCode::NoResponders) => println!("nobody serves pink"),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
