//! `switchyard dead-letters list|redrive`: the operator's view of the DEAD stream, where workers
//! put inbound packets they could not persist (with the error), so a partition moves on.

use std::time::Duration;

use anyhow::Context;
use switchyard_bus::{Bus, TypedBus};
use switchyard_schema::envelope::DeadLetter;
use switchyard_schema::topics;

use crate::config::{Common, DeadLetterAction};
use crate::roles::{connect_nats, Roles};

/// The stream is read until nothing more arrives for this long.
const READ_IDLE: Duration = Duration::from_secs(1);

pub async fn run(common: &Common, action: DeadLetterAction) -> anyhow::Result<()> {
    let urls = common
        .nats
        .as_deref()
        .context("dead letters live on NATS: set SWITCHYARD_NATS (embedded mode only logs them)")?;
    let bus = connect_nats(common, urls, Roles::NONE).await?;
    match action {
        DeadLetterAction::List { limit } => {
            for (seq, letter) in read(&*bus, limit).await? {
                println!("{}", summary(seq, &letter));
            }
        }
        DeadLetterAction::Redrive { seqs, all } => {
            let mut redriven = 0;
            for (seq, letter) in read(&*bus, usize::MAX).await? {
                if !all && !seqs.contains(&seq) {
                    continue;
                }
                // Not the packet id: within the stream's duplicate window that would be dropped
                // as a repeat of the original. Persisting is idempotent on the packet id inside.
                // Raw bytes, as they were first published: a letter that never decoded is
                // re-driven unchanged too.
                let msg_id = format!("redrive-{seq}");
                bus.publish_durable(&letter.subject, &msg_id, letter.payload.into())
                    .await
                    .with_context(|| format!("re-driving dead letter {seq}"))?;
                bus.remove(topics::DEAD.stream.name(), seq)
                    .await
                    .with_context(|| format!("deleting re-driven dead letter {seq}"))?;
                println!("re-drove dead letter {seq} to {}", letter.subject);
                redriven += 1;
            }
            println!("{redriven} dead letters re-driven");
        }
    }
    Ok(())
}

/// Every dead letter (up to `limit`) with its stream sequence.
async fn read(bus: &dyn Bus, limit: usize) -> anyhow::Result<Vec<(u64, DeadLetter)>> {
    use futures::StreamExt;
    let mut letters = Vec::new();
    let mut stream = bus.replay_from(topics::DEAD, 1).await?;
    while letters.len() < limit {
        let Ok(Some(letter)) = tokio::time::timeout(READ_IDLE, stream.next()).await else {
            break;
        };
        let seq = letter.delivery.seq;
        match letter.body {
            Ok(letter) => letters.push((seq, letter)),
            Err(e) => eprintln!("dead letter {seq} unreadable: {e}"),
        }
    }
    Ok(letters)
}

fn summary(seq: u64, letter: &DeadLetter) -> serde_json::Value {
    serde_json::json!({
        "seq": seq,
        "subject": letter.subject,
        "id": letter.id,
        "error": letter.error,
        "attempts": letter.attempts,
        "failed_at_ms": letter.failed_at_ms,
        "bytes": letter.payload.len(),
    })
}
