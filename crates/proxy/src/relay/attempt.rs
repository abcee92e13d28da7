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
    infer_event, proxy_message, worker_event, Completion, ProxyMessage, TokenCounts, WorkerEvent,
    WorkerVoucher,
};
use cocoon_telemetry::ActiveRequest;
use tokio::sync::mpsc;

use super::{Relay, RelayError, Stopped};
use crate::meter::Meter;
use crate::registry::{Lease, WorkerHandle};
use crate::settlement::Reservation;

/// Most chunks forwarded on one durable step.
const MAX_BURST: usize = 256;

/// Chunks forwarded together, each with the tokens used through it.
type Burst = Vec<(Bytes, Usage)>;

/// The relay of one worker's answer to one request.
pub(super) struct Attempt<'a> {
    relay: &'a Relay,
    lease: &'a Lease,
    events: mpsc::Receiver<WorkerEvent>,
    /// `None` when the proxy does not charge, or once settled or released.
    reservation: Option<Reservation>,
    meter: Meter,
    active: &'a mut ActiveRequest,
    /// An event taken from the queue while gathering a burst.
    next: Option<WorkerEvent>,
    /// Whether any of the answer has arrived from the worker.
    answered: bool,
}

impl<'a> Attempt<'a> {
    pub(super) fn new(
        relay: &'a Relay,
        lease: &'a Lease,
        events: mpsc::Receiver<WorkerEvent>,
        reservation: Option<Reservation>,
        active: &'a mut ActiveRequest,
    ) -> Self {
        Attempt {
            relay,
            lease,
            events,
            reservation,
            meter: Meter::default(),
            active,
            next: None,
            answered: false,
        }
    }

    fn worker(&self) -> &'a WorkerHandle {
        &self.lease.worker
    }

    /// Relays the answer to its end. On failure the worker is stopped if it
    /// still runs, and what reached the client is charged (or the
    /// reservation released).
    pub(super) async fn run(mut self) -> Result<(), Stopped> {
        let result = self.relay_answer().await;
        let Err(error) = result else {
            return Ok(());
        };
        if error.worker_still_running() {
            self.relay.cancel(self.worker()).await;
        }
        self.close_cut_off().await;
        Err(Stopped {
            error,
            answered: self.answered,
        })
    }

    async fn relay_answer(&mut self) -> Result<(), RelayError> {
        loop {
            let WorkerEvent { event, so_far, .. } = self.next_event().await?;
            let ended = match event {
                Some(worker_event::Event::Chunk(bytes)) => self.relay_burst(bytes, so_far).await?,
                Some(worker_event::Event::Done(done)) => {
                    self.finish(done).await;
                    true
                }
                Some(worker_event::Event::Error(error)) => {
                    return Err(RelayError::Worker {
                        worker: self.worker().name.clone(),
                        error,
                    })
                }
                // Only scoring requests are answered with a score.
                Some(worker_event::Event::Scored(_)) | None => false,
            };
            if ended {
                return Ok(());
            }
        }
    }

    /// The worker's next event; an error when the client leaves, the
    /// deadline passes or the worker's session ends first.
    async fn next_event(&mut self) -> Result<WorkerEvent, RelayError> {
        if let Some(ev) = self.next.take() {
            return Ok(ev);
        }
        let event = tokio::select! {
            biased;
            _ = self.relay.to_client.closed() => {
                tracing::info!(worker = %self.worker().name, "client went away; cancelling");
                return Err(RelayError::ClientGone);
            }
            _ = tokio::time::sleep_until(self.relay.deadline) => return Err(RelayError::Timeout),
            ev = self.events.recv() => ev,
        };
        match event {
            Some(ev) => Ok(ev),
            None if self.lease.overflowed() => Err(RelayError::ClientTooSlow),
            None => Err(RelayError::WorkerLost {
                worker: self.worker().name.clone(),
                mid_answer: self.answered,
            }),
        }
    }

    /// Forwards a chunk with the ones gathered behind it on one durable
    /// step; true when the burst ended the answer.
    async fn relay_burst(
        &mut self,
        first: Bytes,
        so_far: Option<TokenCounts>,
    ) -> Result<bool, RelayError> {
        if !self.answered {
            self.answered = true;
            self.active.first_byte();
            self.lease.first_byte();
        }
        let burst = self.gather(first, so_far).await;
        let settled = match self.next.take() {
            // A burst that ends the answer is covered by its settlement,
            // made before any of it is forwarded.
            Some(WorkerEvent {
                event: Some(worker_event::Event::Done(mut done)),
                ..
            }) if self.reservation.is_some() => {
                self.settle(&mut done).await;
                Some(done)
            }
            other => {
                self.next = other;
                self.make_durable(&burst).await?;
                None
            }
        };
        self.forward(burst).await?;
        let Some(done) = settled else {
            return Ok(false);
        };
        self.active.succeed();
        self.relay.keep_receipt(&done);
        let _ = self.relay.send(infer_event::Event::Done(done)).await;
        Ok(true)
    }

    /// The chunk and what follows it at once, or within the checkpoint
    /// window; the first other event is kept in `next`.
    async fn gather(&mut self, first: Bytes, so_far: Option<TokenCounts>) -> Burst {
        let mut burst = vec![(first, self.meter.receive(so_far.as_ref()))];
        while burst.len() < MAX_BURST {
            match self.events.try_recv().map(Event::of) {
                Ok(Event::Chunk(b, so_far)) => burst.push((b, self.meter.receive(so_far.as_ref()))),
                Ok(Event::Other(other)) => {
                    self.next = Some(*other);
                    return burst;
                }
                Err(_) => break,
            }
        }
        let Some(until) = self.reservation.as_ref().and_then(Reservation::hold_until) else {
            return burst;
        };
        let until = until.min(self.relay.deadline);
        while self.next.is_none() && burst.len() < MAX_BURST {
            let ev = tokio::select! {
                biased;
                // The client left: what is gathered goes nowhere, and the
                // forward says so.
                _ = self.relay.to_client.closed() => break,
                ev = tokio::time::timeout_at(until, self.events.recv()) => ev,
            };
            // The window passed, or the worker is gone (seen again on the
            // next receive).
            let Ok(Some(ev)) = ev else { break };
            match Event::of(ev) {
                Event::Chunk(b, so_far) => burst.push((b, self.meter.receive(so_far.as_ref()))),
                Event::Other(other) => self.next = Some(*other),
            }
        }
        burst
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
            if let Some(kept) = self
                .relay
                .kept
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
            {
                kept.push(bytes.clone());
            }
            tokio::select! {
                sent = self.relay.send(infer_event::Event::Chunk(bytes)) => sent?,
                _ = self.lease.overflow() => {
                    tracing::warn!(worker = %self.worker().name, "client stopped reading; cancelling");
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
        self.lease.first_byte();
        self.active.succeed();
        self.relay.keep_receipt(&done);
        let _ = self.relay.send(infer_event::Event::Done(done)).await;
    }

    /// Settles a finished answer (recording its usage) and stamps the cost
    /// and the client's voucher on `done`.
    async fn settle(&mut self, done: &mut Completion) {
        let usage = done.usage();
        self.relay.shared.metrics.record_usage(&usage);
        if let Some(r) = self.reservation.take() {
            self.charge(r, &usage, done).await;
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
        if self.charge(r, &usage, &mut done).await {
            tracing::info!(
                chunks = self.meter.delivered_chunks(),
                prompt = usage.prompt,
                completion = usage.completion,
                cost = done.cost_nanoton,
                "charged a cut-off answer for what was delivered"
            );
        }
    }

    /// Charges `usage` (see [`charge`]).
    async fn charge(&self, r: Reservation, usage: &Usage, done: &mut Completion) -> bool {
        charge(self.worker(), r, usage, done).await
    }
}

/// Charges `usage`, stamps the cost and the client's voucher on `done`,
/// and sends the worker its voucher. False if the books failed: the
/// reservation then stays, with its durable progress, for recovery.
pub(super) async fn charge(
    worker: &WorkerHandle,
    r: Reservation,
    usage: &Usage,
    done: &mut Completion,
) -> bool {
    let settled = match r.settle(usage).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "charging a finished request failed; its reservation stays for recovery");
            return false;
        }
    };
    done.cost_nanoton = settled.charged.client.get();
    if let Some(v) = &settled.client_voucher {
        done.client_voucher = v.to_boc().unwrap_or_default().into();
    }
    send_voucher(worker, settled.worker_voucher).await;
    true
}

/// Sends `worker` its new cumulative voucher, if a settlement signed one.
pub(crate) async fn send_voucher(
    worker: &WorkerHandle,
    voucher: Option<cocoon_pay::SignedVoucher>,
) {
    if let Some(boc) = voucher.and_then(|v| v.to_boc().ok()) {
        let msg = ProxyMessage {
            msg: Some(proxy_message::Msg::Voucher(WorkerVoucher {
                voucher: boc.into(),
            })),
        };
        let _ = worker.send(msg).await;
    }
}

/// A worker event, as burst gathering sees it.
enum Event {
    /// A chunk, with the engine's running count if it sent one.
    Chunk(Bytes, Option<TokenCounts>),
    /// Anything else, which ends the burst (boxed: a completion is large).
    Other(Box<WorkerEvent>),
}

impl Event {
    fn of(ev: WorkerEvent) -> Event {
        match ev {
            WorkerEvent {
                event: Some(worker_event::Event::Chunk(b)),
                so_far,
                ..
            } => Event::Chunk(b, so_far),
            other => Event::Other(Box::new(other)),
        }
    }
}
