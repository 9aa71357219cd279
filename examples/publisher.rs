//! Publishes numbered messages to a topic through a running broker.
//!
//! ```text
//! ringbus serve &
//! cargo run --example subscriber -- demo &
//! cargo run --example publisher -- demo 1000
//! ```

use std::time::Duration;

use ringbus::client::{Client, Mode, TopicConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "demo".into());
    let count: u64 = args.next().map_or(Ok(100), |s| s.parse())?;

    // Connects to $RINGBUS_SOCKET or the default socket.
    let client = Client::connect_default()?;
    let config = TopicConfig {
        max_message_size: 256,
        capacity: 1024,
        mode: Mode::Backpressure, // nothing is lost: waits for slow readers
        max_subscribers: 16,
    };
    // The publisher owns one ring of the topic: `publish`, `try_publish`,
    // `publish_timeout`, and zero-copy `loan` + `commit`.
    let mut publisher = client.publisher(&topic, config)?;
    for i in 0..count {
        // Zero-copy: write the payload in place, then commit it.
        let text = format!("message {i} from pid {}", std::process::id());
        let mut loan = publisher.loan(text.len())?;
        loan.copy_from_slice(text.as_bytes());
        loan.commit(i);
        std::thread::sleep(Duration::from_millis(10));
    }
    // Dropping the publisher ends the stream: subscribers drain it, then
    // see end of stream.
    Ok(())
}
