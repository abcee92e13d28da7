//! One worker's answer, relayed in bursts.
//!
//! The rule: no chunk reaches the client before the cost of everything up
//! to and including it is durable. Chunks the worker has already sent when
//! one arrives ride on the same durable step (a burst); with a checkpoint
//! window, so do those arriving within it. A burst that ends the answer
//! rides on the settlement itself.

use bytes::Bytes;
use cocoon_core::{Nanoton, Usage};
use cocoon_proto::{
    infer_event, proxy_message, Completion, ProxyMessage, TokenCounts, WorkerVoucher,
};
use cocoon_telemetry::ActiveRequest;

use super::{Answer, Relay, RelayError, RunEvent, Stopped, WorkerRun};
use crate::meter::Meter;
use crate::registry::WorkerHandle;
use crate::settlement::{Reservation, SettleError};

/// Most chunks forwarded on one durable step.
const MAX_BURST: usize = 256;

/// Chunks forwarded together, each with the tokens used through it.
type Burst = Vec<(Bytes, Usage)>;

/// The relay of one worker's answer to one request.
pub(super) struct Attempt<'a> {
    relay: &'a Relay,
    run: WorkerRun,
    /// `None` when the proxy does not charge, or once settled or released.
    reservation: Option<Reservation>,
    meter: Meter,
    active: &'a mut ActiveRequest,
    /// Whether the answer's first byte has been counted.
    started: bool,
    /// A failure met while gathering a burst, reported once the chunks
    /// before it are relayed.
    failed: Option<RelayError>,
    /// The answer as relayed, kept when it is to be spot-checked: the
    /// chunks as they go out, then the completion.
    kept: Option<(Vec<Bytes>, Option<Completion>)>,
}

impl<'a> Attempt<'a> {
    pub(super) fn new(
        relay: &'a Relay,
        run: WorkerRun,
        reservation: Option<Reservation>,
        active: &'a mut ActiveRequest,
        keep: bool,
    ) -> Self {
        Attempt {
            relay,
            run,
            reservation,
            meter: Meter::default(),
            active,
            started: false,
            failed: None,
            kept: keep.then(|| (Vec::new(), None)),
        }
    }

    /// Relays the answer to its end, then ends the run. On failure what
    /// reached the client is charged (or the reservation released). The
    /// answer comes back when it was kept for a spot-check.
    pub(super) async fn run(mut self) -> Result<Option<Answer>, Stopped> {
        let result = self.relay_answer().await;
        if let Err(error) = result {
            // Told to stop before its cut-off answer is settled.
            self.run.end(!error.retryable()).await;
            self.close_cut_off().await;
            return Err(Stopped {
                error,
                answered: self.run.answered(),
            });
        }
        self.run.end(true).await;
        Ok(self
            .kept
            .take()
            .and_then(|(chunks, done)| done.map(|done| Answer { chunks, done })))
    }

    async fn relay_answer(&mut self) -> Result<(), RelayError> {
        loop {
            match self.run.next().await? {
                RunEvent::Chunk(bytes, so_far) => {
                    if self.relay_burst(bytes, so_far).await? {
                        return Ok(());
                    }
                }
                RunEvent::Done(done) => {
                    self.finish(*done).await;
                    return Ok(());
                }
                // Only scoring requests are answered with a score.
                RunEvent::Scored(_) => {}
            }
        }
    }

    /// Forwards a chunk with the ones gathered behind it on one durable
    /// step; true when the burst ended the answer.
    async fn relay_burst(
        &mut self,
        first: Bytes,
        so_far: Option<TokenCounts>,
    ) -> Result<bool, RelayError> {
        if !self.started {
            self.started = true;
            self.active.first_byte();
        }
        let (burst, after) = self.gather(first, so_far).await;
        let settled = match after {
            // A burst that ends the answer is covered by its settlement,
            // made before any of it is forwarded.
            Some(RunEvent::Done(mut done)) if self.reservation.is_some() => {
                self.settle(&mut done).await;
                Some(done)
            }
            other => {
                if let Some(ev) = other {
                    self.run.put_back(ev);
                }
                self.make_durable(&burst).await?;
                None
            }
        };
        self.forward(burst).await?;
        if let Some(failure) = self.failed.take() {
            return Err(failure);
        }
        let Some(done) = settled else {
            return Ok(false);
        };
        self.deliver(*done).await;
        Ok(true)
    }

    /// The chunk and what follows it at once, or within the checkpoint
    /// window; with the event that ended the burst, if it was not a chunk.
    /// A failure met meanwhile waits in `failed`.
    async fn gather(
        &mut self,
        first: Bytes,
        so_far: Option<TokenCounts>,
    ) -> (Burst, Option<RunEvent>) {
        let mut burst = vec![(first, self.meter.receive(so_far.as_ref()))];
        let hold = (self.reservation.as_ref())
            .and_then(Reservation::hold_until)
            .map(|until| until.min(self.run.deadline()));
        while burst.len() < MAX_BURST {
            let ev = match (self.run.ready(), hold) {
                (Some(ev), _) => ev,
                (None, Some(until)) => match self.run.next_before(until).await.transpose() {
                    Some(ev) => ev,
                    None => break, // the window passed
                },
                (None, None) => break,
            };
            match ev {
                Ok(RunEvent::Chunk(b, so_far)) => {
                    burst.push((b, self.meter.receive(so_far.as_ref())))
                }
                Ok(other) => return (burst, Some(other)),
                Err(failure) => {
                    self.failed = Some(failure);
                    break;
                }
            }
        }
        (burst, None)
    }

    /// Makes the cost through the burst's last chunk durable; nothing goes
    /// out that the books have not recorded.
    async fn make_durable(&mut self, burst: &Burst) -> Result<(), RelayError> {
        let (Some(r), Some((_, through))) = (self.reservation.as_mut(), burst.last()) else {
            return Ok(());
        };
        r.checkpoint(through).await.map_err(|e| {
            tracing::error!(error = %e, "could not record progress; stopping the answer");
            RelayError::Books(e)
        })
    }

    /// Forwards a burst to the client, in order, counting each chunk
    /// delivered as it goes.
    async fn forward(&mut self, burst: Burst) -> Result<(), RelayError> {
        for (bytes, through) in burst {
            if let Some((kept, _)) = self.kept.as_mut() {
                kept.push(bytes.clone());
            }
            tokio::select! {
                sent = self.relay.send(infer_event::Event::Chunk(bytes)) => sent?,
                _ = self.run.overflow() => {
                    tracing::warn!(worker = %self.run.worker().name, "client stopped reading; cancelling");
                    return Err(RelayError::ClientTooSlow);
                }
            }
            self.meter.delivered(through);
        }
        Ok(())
    }

    /// The answer ended without chunks after the last burst.
    async fn finish(&mut self, mut done: Completion) {
        if self.reservation.is_some() {
            self.settle(&mut done).await;
        } else {
            self.relay.shared.metrics.record_usage(&done.usage());
        }
        self.active.first_byte();
        self.deliver(done).await;
    }

    /// Sends the client the completion, settled.
    async fn deliver(&mut self, done: Completion) {
        self.active.succeed();
        if let Some((_, kept)) = self.kept.as_mut() {
            *kept = Some(done.clone());
        }
        let _ = self.relay.send(infer_event::Event::Done(done)).await;
    }

    /// Settles a finished answer (recording its usage) and stamps the cost
    /// and the client's voucher on `done`.
    async fn settle(&mut self, done: &mut Completion) {
        let usage = done.usage();
        self.relay.shared.metrics.record_usage(&usage);
        if let Some(r) = self.reservation.take() {
            // A failure is logged; the reservation stays for recovery.
            let _ = charge(self.run.worker(), r, &usage, done).await;
        }
    }

    /// Closes the reservation of an answer that stopped early: what reached
    /// the client is charged; if nothing billable did, it is released.
    async fn close_cut_off(&mut self) {
        let Some(r) = self.reservation.take() else {
            return;
        };
        let usage = self.meter.delivered_usage();
        // Nothing billable reached the client (at most an opening role chunk).
        if self.meter.delivered_chunks() == 0 || r.cost(&usage).client == Nanoton::ZERO {
            r.release().await;
            return;
        }
        let mut done = Completion::default();
        if charge(self.run.worker(), r, &usage, &mut done)
            .await
            .is_ok()
        {
            tracing::info!(
                chunks = self.meter.delivered_chunks(),
                prompt = usage.prompt,
                completion = usage.completion,
                cost = done.cost_nanoton,
                "charged a cut-off answer for what was delivered"
            );
        }
    }
}

/// Charges `usage`, stamps the cost and the client's voucher on `done`,
/// and sends the worker its voucher. An error if the books failed: the
/// reservation then stays, with its durable progress, for recovery.
pub(super) async fn charge(
    worker: &WorkerHandle,
    r: Reservation,
    usage: &Usage,
    done: &mut Completion,
) -> Result<(), SettleError> {
    let settled = r.settle(usage).await.map_err(|e| {
        tracing::error!(error = %e, "charging a finished request failed; its reservation stays for recovery");
        e
    })?;
    done.cost_nanoton = settled.charged.client.get();
    if let Some(v) = &settled.client_voucher {
        // The charge stands either way: the client reads its latest
        // voucher from its balance if this one cannot travel.
        match v.to_boc() {
            Ok(boc) => done.client_voucher = boc.into(),
            Err(e) => tracing::error!(error = %e, "the client's new voucher could not be encoded"),
        }
    }
    send_voucher(worker, settled.worker_voucher).await;
    Ok(())
}

/// Sends `worker` its new cumulative voucher, if a settlement signed one.
pub(crate) async fn send_voucher(
    worker: &WorkerHandle,
    voucher: Option<cocoon_pay::SignedVoucher>,
) {
    let Some(voucher) = voucher else {
        return;
    };
    let boc = match voucher.to_boc() {
        Ok(boc) => boc,
        Err(e) => {
            // The worker's next voucher covers this one: they are cumulative.
            tracing::error!(worker = %worker.name, error = %e, "the worker's new voucher could not be encoded");
            return;
        }
    };
    let msg = ProxyMessage {
        msg: Some(proxy_message::Msg::Voucher(WorkerVoucher {
            voucher: boc.into(),
        })),
    };
    let _ = worker.send(msg).await;
}
