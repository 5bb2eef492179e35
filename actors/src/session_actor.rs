//! The session actor: owns one [`SessionCore`] on its arbiter's thread and runs its
//! requests. Requests run concurrently (each is its own future on the arbiter; the
//! mailbox is not held while one runs), and each can be aborted when a close reaches
//! its deadline.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use actix::{Actor, Context, Handler, Message, ResponseFuture};
use futures_util::future::{AbortHandle, Abortable};

use crate::core::SessionCore;

/// The actor around one session.
pub struct SessionActor<C: SessionCore> {
    core: C,
    running: Rc<RefCell<HashMap<u64, AbortHandle>>>,
    next: u64,
}

impl<C: SessionCore> SessionActor<C> {
    /// An actor for `core`.
    pub fn new(core: C) -> Self {
        SessionActor {
            core,
            running: Rc::default(),
            next: 0,
        }
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
        self.next += 1;
        let key = self.next;
        let (handle, registration) = AbortHandle::new_pair();
        self.running.borrow_mut().insert(key, handle);
        let running = self.running.clone();
        let fut = Abortable::new(self.core.execute(msg.0), registration);
        Box::pin(async move {
            let out = fut.await.map_err(|_| Aborted);
            running.borrow_mut().remove(&key);
            out
        })
    }
}

/// Abort every running request (a close or shutdown deadline passed).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct AbortAll;

impl<C: SessionCore> Handler<AbortAll> for SessionActor<C> {
    type Result = usize;

    fn handle(&mut self, _: AbortAll, ctx: &mut Context<Self>) -> usize {
        let aborted: Vec<AbortHandle> = self.running.borrow_mut().drain().map(|(_, h)| h).collect();
        for h in &aborted {
            h.abort();
        }
        actix::ActorContext::stop(ctx);
        aborted.len()
    }
}

/// Stop the actor once nothing runs (after a graceful close).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

impl<C: SessionCore> Handler<Retire> for SessionActor<C> {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        actix::ActorContext::stop(ctx);
    }
}
