//! Prints the messages of a topic, from every publisher, until all the
//! publishers it has seen have left.
//!
//! ```text
//! cargo run --example subscriber -- demo
//! ```

use ringbus::client::{Client, SubscribeOptions};
use ringbus::ring::{RecvError, Start};
use ringbus::wait::WaitStrategy;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let topic = std::env::args().nth(1).unwrap_or_else(|| "demo".into());
    let client = Client::connect_default()?;
    let mut subscriber = client.subscriber(
        &topic,
        SubscribeOptions {
            start: Start::Earliest,
            wait: WaitStrategy::default(), // spin briefly, then sleep on a futex
        },
    )?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen_any = false;
    loop {
        match subscriber.recv(&mut buf) {
            Ok(d) => {
                seen_any = true;
                let text = String::from_utf8_lossy(&buf[..d.info.len]);
                println!(
                    "ring {:x} seq {} tag {}: {text}",
                    d.ring_id, d.info.seq, d.info.tag
                );
            }
            Err(RecvError::Lagged { missed }) => eprintln!("lagged: {missed} messages lost"),
            Err(RecvError::EndOfStream) => {
                eprintln!("ring {:x} ended", subscriber.last_ring_id());
                if seen_any && subscriber.rings().is_empty() {
                    return Ok(());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}
