//! The session actor: owns one [`SessionCore`] and the registry of its running
//! requests ([`Running`]), so that a close that reaches its deadline can abort them.
//! Requests run concurrently: on the arbiter (each is its own future there; the mailbox
//! is not held while one runs) or in the caller's task, registered all the same.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use actix::{Actor, Context, Handler, Message, ResponseFuture};
use futures_util::future::{AbortHandle, Abortable};

use crate::core::SessionCore;

/// The requests of one session that are running now, wherever they run, each with the
/// handle that aborts it. Cheap to clone (clones share the registry).
#[derive(Clone, Default)]
pub struct Running(Arc<Mutex<RunningInner>>);

#[derive(Default)]
struct RunningInner {
    next: u64,
    handles: HashMap<u64, AbortHandle, foldhash::fast::RandomState>,
}

/// Removes a request from the registry when it ends, or when its caller drops it.
struct Registration {
    running: Running,
    key: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.running.lock().handles.remove(&self.key);
    }
}

impl Running {
    fn lock(&self) -> MutexGuard<'_, RunningInner> {
        // A map insert or remove cannot leave the map half-changed.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `fut`; it ends with [`Aborted`] if [`Running::abort_all`] comes first.
    pub fn run<F: Future>(&self, fut: F) -> impl Future<Output = Result<F::Output, Aborted>> {
        let (handle, abort) = AbortHandle::new_pair();
        let key = {
            let mut inner = self.lock();
            inner.next += 1;
            let key = inner.next;
            inner.handles.insert(key, handle);
            key
        };
        let registration = Registration {
            running: self.clone(),
            key,
        };
        let fut = Abortable::new(fut, abort);
        async move {
            let out = fut.await.map_err(|_| Aborted);
            drop(registration);
            out
        }
    }

    /// Aborts every registered request; returns how many.
    pub fn abort_all(&self) -> usize {
        let aborted: Vec<AbortHandle> = self.lock().handles.drain().map(|(_, h)| h).collect();
        for h in &aborted {
            h.abort();
        }
        aborted.len()
    }
}

/// The actor around one session.
pub struct SessionActor<C: SessionCore> {
    core: C,
    running: Running,
}

impl<C: SessionCore> SessionActor<C> {
    /// An actor for `core` whose requests register in `running`.
    pub fn new(core: C, running: Running) -> Self {
        SessionActor { core, running }
    }
}

impl<C: SessionCore> Actor for SessionActor<C> {
    type Context = Context<Self>;
}

/// Run one attempt of a request.
pub struct Execute<C: SessionCore>(pub C::Request);

/// An attempt was cut off by a close or shutdown deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aborted;

impl<C: SessionCore> Message for Execute<C> {
    type Result = Result<Result<C::Response, C::Error>, Aborted>;
}

impl<C: SessionCore> Handler<Execute<C>> for SessionActor<C> {
    type Result = ResponseFuture<Result<Result<C::Response, C::Error>, Aborted>>;

    fn handle(&mut self, msg: Execute<C>, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.running.run(self.core.execute(&msg.0)))
    }
}

/// Stop the actor (after a close: its requests have finished or been aborted).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

impl<C: SessionCore> Handler<Retire> for SessionActor<C> {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        actix::ActorContext::stop(ctx);
    }
}
