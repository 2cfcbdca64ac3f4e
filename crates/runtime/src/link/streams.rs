//! Streams and futures across a link. A `stream<T>` or `future<T>` lives in the store that
//! made it; the other side of a link has a store of its own, so the host takes the readable
//! end out of one store (piping it into a [`Sink`]), makes a new one in the other (fed by a
//! [`Feed`]), and moves the items between them chunk by chunk through a bounded channel.
//!
//! Bounded twice: each stream holds at most [`DEPTH`] chunks in flight, and all streams of
//! one link share a byte budget ([`Budget`]) that a chunk must take its share of before it
//! crosses; a writer whose reader does not keep up waits (backpressure), it never grows
//! the host's memory. The budget never stops a stream outright: one with nothing in
//! flight may always send one chunk, so readers that stall (one tenant's requests, say)
//! slow the link's other streams down to a chunk at a time, never to a halt. Either side dropping its end closes the channel, and the other side
//! sees its stream end: a reader gone cancels the writer, a writer gone (finished, trapped
//! or stopped at its deadline) ends the reader's stream.
//!
//! wasmtime 48 gives the pieces (`StreamReader::pipe` with a `StreamConsumer`,
//! `StreamReader::new` with a `StreamProducer`, and their future counterparts); what is
//! ours is the channel between two stores, which wasmtime leaves to the embedder.

use super::kind::Kind;
use futures_util::task::AtomicWaker;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::{PollSemaphore, PollSender, WaitForCancellationFutureOwned};
use wasmtime::StoreContextMut;
use wasmtime::component::types::{ComponentFunc, Type};
use wasmtime::component::{
    Destination, FutureAny, FutureConsumer, FutureProducer, FutureReader, Lift, Lower, Source, StreamAny,
    StreamConsumer, StreamProducer, StreamReader, StreamResult, Val, VecBuffer,
};

/// Chunks one stream may have in flight between the stores.
pub const DEPTH: usize = 4;
/// The most bytes (of fixed-size items) one chunk carries.
const CHUNK_BYTES: usize = 64 * 1024;
/// The most items of variable size (strings, lists) one chunk carries.
const CHUNK_ITEMS: usize = 64;
/// The bytes all streams of one link may have in flight at once, unless the link's
/// `stream_budget` says otherwise.
pub const LINK_BUDGET: usize = 16 << 20;

/// A stream or future among a function's parameters or results, which the link forwards
/// between the two stores; the payload is one of the kinds it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    Stream(Kind),
    Future(Kind),
}

impl Carried {
    /// What a parameter or result of type `ty` needs of the link: `Ok(None)` for a plain
    /// value, else the stream or future to forward, or why it cannot be.
    pub fn of(ty: &Type) -> Result<Option<Carried>, String> {
        let payload = |inner: Option<Type>, what: &str| match inner.as_ref().and_then(Kind::of) {
            Some(kind) => Ok(kind),
            None => Err(format!(
                "a {what} of {} is not forwarded between stores; streams and futures of u8, u32, \
                 s32, u64, s64, f32, f64, bool, char, string and lists of u8, u32 or f64 are",
                inner.as_ref().map(describe).unwrap_or("nothing (a unit payload)")
            )),
        };
        match ty {
            Type::Stream(s) => Ok(Some(Carried::Stream(payload(s.ty(), "stream")?))),
            Type::Future(f) => Ok(Some(Carried::Future(payload(f.ty(), "future")?))),
            other if holds_async(other) => {
                Err("a stream, future or error-context inside another type is not forwarded between stores; \
                 pass it as a parameter or result of its own"
                    .into())
            }
            _ => Ok(None),
        }
    }
}

/// Whether a stream, future or error-context sits anywhere in `ty`.
fn holds_async(ty: &Type) -> bool {
    crate::values::holds(ty, &|t| matches!(t, Type::Stream(_) | Type::Future(_) | Type::ErrorContext))
}

/// What a payload the link does not forward is, in WIT's words.
fn describe(ty: &Type) -> &'static str {
    match ty {
        Type::S8 => "s8",
        Type::S16 => "s16",
        Type::U16 => "u16",
        Type::List(_) | Type::FixedLengthList(_) => "lists of this type",
        Type::Map(_) => "maps",
        Type::Record(_) => "records",
        Type::Variant(_) => "variants",
        Type::Enum(_) => "enums",
        Type::Flags(_) => "flags",
        Type::Option(_) => "options",
        Type::Result(_) => "results",
        Type::Own(_) | Type::Borrow(_) => "resources",
        Type::Stream(_) | Type::Future(_) => "streams and futures",
        Type::ErrorContext => "error contexts",
        Type::Tuple(_) => "tuples",
        _ => "this type",
    }
}

/// The bytes in flight that all streams of one link share.
#[derive(Clone)]
pub struct Budget {
    bytes: Arc<Semaphore>,
    size: usize,
}

impl Budget {
    /// A budget of `size` bytes (the manifest's `stream_budget`).
    pub fn new(size: usize) -> Budget {
        Budget { bytes: Arc::new(Semaphore::new(size)), size }
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(LINK_BUDGET)
    }
}

/// An item a link forwards: one of the payload kinds, with what it weighs against the
/// budget and how it is taken out of the writer's memory.
pub trait Item: Lift + Lower + Unpin + Send + Sync + 'static {
    /// Whether every item weighs the same (then a chunk is sized in bytes up front).
    const FIXED: bool;

    fn weight(&self) -> usize;

    /// Takes up to `most` items from `source`. Items of one size are lifted together;
    /// strings and lists one at a time until the chunk weighs [`CHUNK_BYTES`], since the
    /// writer's items may all point at the same bytes of its memory (the host would copy
    /// each), so that a chunk is never more than that plus one item.
    fn take<'a, D: 'static>(
        mut source: Source<'a, Self>,
        mut store: StoreContextMut<'a, D>,
        most: usize,
    ) -> wasmtime::Result<Vec<Self>> {
        if Self::FIXED {
            let mut items = Vec::with_capacity(most);
            source.read(store, &mut items)?;
            return Ok(items);
        }
        let (mut items, mut weight) = (Vec::new(), 0);
        while items.len() < most && weight < CHUNK_BYTES && source.remaining(&mut store) > 0 {
            let mut one = Vec::with_capacity(1);
            source.read(&mut store, &mut one)?;
            weight += one.iter().map(Item::weight).sum::<usize>();
            items.append(&mut one);
        }
        Ok(items)
    }
}

/// Bytes are copied out of the writer's memory in one go.
impl Item for u8 {
    const FIXED: bool = true;

    fn weight(&self) -> usize {
        1
    }

    fn take<'a, D: 'static>(
        source: Source<'a, u8>,
        store: StoreContextMut<'a, D>,
        most: usize,
    ) -> wasmtime::Result<Vec<u8>> {
        let mut direct = source.as_direct(store);
        let bytes = direct.remaining();
        let taken = bytes[..bytes.len().min(most)].to_vec();
        direct.mark_read(taken.len());
        Ok(taken)
    }
}

macro_rules! fixed {
    ($($t:ty),*) => {$(
        impl Item for $t {
            const FIXED: bool = true;
            fn weight(&self) -> usize { size_of::<$t>() }
        }
    )*};
}
fixed!(bool, u32, i32, u64, i64, f32, f64, char);

impl Item for String {
    const FIXED: bool = false;
    fn weight(&self) -> usize {
        self.len().max(1)
    }
}

macro_rules! lists {
    ($($t:ty),*) => {$(
        impl Item for Vec<$t> {
            const FIXED: bool = false;
            fn weight(&self) -> usize { (self.len() * size_of::<$t>()).max(1) }
        }
    )*};
}
lists!(u8, u32, f64);

/// Items on their way from one store to the other, with their share of the budget.
struct Chunk<T> {
    items: Vec<T>,
    _budget: Option<OwnedSemaphorePermit>,
    _flight: Flight,
}

/// The chunks of one stream in flight: counted while they are, and the writer woken when
/// the last lands (it may then send one without the budget).
#[derive(Clone, Default)]
struct InFlight(Arc<(AtomicUsize, AtomicWaker)>);

impl InFlight {
    fn is_empty(&self) -> bool {
        self.0.0.load(Relaxed) == 0
    }

    fn start(&self) -> Flight {
        self.0.0.fetch_add(1, Relaxed);
        Flight(self.clone())
    }
}

/// One chunk in flight.
struct Flight(InFlight);

impl Drop for Flight {
    fn drop(&mut self) {
        if self.0.0.0.fetch_sub(1, Relaxed) == 1 {
            self.0.0.1.wake();
        }
    }
}

/// A stream or future taken out of one store, ready to be made anew in the other.
pub trait Landing: Send {
    /// Makes the stream or future in `store`, fed from the other store; as the `Val` to
    /// pass there.
    fn land(self: Box<Self>, store: StoreContextMut<'_, crate::sandbox::SandboxState>) -> wasmtime::Result<Val>;
}

/// Stops the streams of one call: each ends for its reader, and its writer finds its
/// reader gone. A call into a long-lived instance that is stopped (its deadline passed)
/// cuts them, since the instance, and a writer in it that stalls, lives on.
pub type Cut = tokio_util::sync::CancellationToken;

/// One end's watch on its call's [`Cut`].
struct Watch {
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    fired: bool,
}

impl Watch {
    fn new(cut: &Cut) -> Watch {
        Watch { cut: Box::pin(cut.clone().cancelled_owned()), fired: false }
    }

    /// Whether the call's streams were cut; wakes `cx` when they are.
    fn fired(&mut self, cx: &mut Context<'_>) -> bool {
        self.fired = self.fired || self.cut.as_mut().poll(cx).is_ready();
        self.fired
    }
}

/// Resolves once the end made in the other store is gone (its reader dropped it, or its
/// store went away): nobody there waits for what this side writes any more.
pub type Interest = oneshot::Receiver<()>;

/// Takes `value`, a stream or future of `carried` in `store`, out of that store: what its
/// writer sends goes to the [`Landing`] returned, to be made in the other store; with the
/// other side's [`Interest`] in it.
pub fn take_off(
    carried: Carried,
    value: &Val,
    store: StoreContextMut<'_, crate::sandbox::SandboxState>,
    budget: &Budget,
    toward: Toward,
    cut: &Cut,
) -> wasmtime::Result<(Box<dyn Landing>, Interest)> {
    match (carried, value) {
        (Carried::Stream(kind), Val::Stream(any)) => {
            crate::link::kind::one!(kind, T => stream_off::<T>(any.clone(), store, budget, cut))
        }
        (Carried::Future(kind), Val::Future(any)) => {
            crate::link::kind::one!(kind, T => future_off::<T>(any.clone(), store, toward))
        }
        (carried, value) => wasmtime::bail!("expected a {carried:?}, found {value:?}"),
    }
}

fn stream_off<T: Item>(
    any: StreamAny,
    mut store: StoreContextMut<'_, crate::sandbox::SandboxState>,
    budget: &Budget,
    cut: &Cut,
) -> wasmtime::Result<(Box<dyn Landing>, Interest)> {
    let reader = any.try_into_stream_reader::<T>()?;
    let (tx, rx) = mpsc::channel(DEPTH);
    let sink = Sink {
        tx: PollSender::new(tx),
        budget: PollSemaphore::new(budget.bytes.clone()),
        size: budget.size,
        held: None,
        in_flight: InFlight::default(),
        cut: Watch::new(cut),
    };
    reader.pipe(&mut store, sink)?;
    let (held, interest) = oneshot::channel();
    Ok((Box::new(Feed { rx, cut: Watch::new(cut), _held: held }), interest))
}

fn future_off<T: Item>(
    any: FutureAny,
    mut store: StoreContextMut<'_, crate::sandbox::SandboxState>,
    toward: Toward,
) -> wasmtime::Result<(Box<dyn Landing>, Interest)> {
    let reader = any.try_into_future_reader::<T>()?;
    let (tx, rx) = oneshot::channel();
    reader.pipe(&mut store, FutureSink { tx: Some(tx) })?;
    let (held, interest) = oneshot::channel();
    Ok((Box::new(FutureFeed { rx: Some(rx), _held: held, toward }), interest))
}

/// The reading end of a stream taken out of its store: forwards what its writer sends.
struct Sink<T: Send + 'static> {
    tx: PollSender<Chunk<T>>,
    budget: PollSemaphore,
    /// The whole budget, in bytes.
    size: usize,
    /// Items taken from the writer, waiting for their share of the budget.
    held: Option<Vec<T>>,
    in_flight: InFlight,
    /// Ends the stream when its call is stopped: its writer finds its reader gone.
    cut: Watch,
}

impl<T: Item, D> StreamConsumer<D> for Sink<T> {
    type Item = T;

    fn poll_consume(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<D>,
        source: Source<'_, T>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let this = &mut *self;
        if this.cut.fired(cx) {
            return Poll::Ready(Ok(StreamResult::Dropped));
        }
        if this.held.is_none() {
            // Room in the channel first, so that items taken are items that can go.
            match this.tx.poll_reserve(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(StreamResult::Dropped)),
                Poll::Pending if finish => return Poll::Ready(Ok(StreamResult::Cancelled)),
                Poll::Pending => return Poll::Pending,
            }
            let remaining = source.remaining(&mut store);
            if remaining == 0 {
                return Poll::Ready(Ok(StreamResult::Completed));
            }
            let most = if T::FIXED { CHUNK_BYTES / size_of::<T>().max(1) } else { CHUNK_ITEMS };
            this.held = Some(T::take(source, store, remaining.min(most))?);
        }
        let weight: usize = this.held.iter().flatten().map(Item::weight).sum();
        // A chunk heavier than the whole budget waits for all of it.
        let weight = weight.min(this.size) as u32;
        let permit = match this.budget.poll_acquire_many(cx, weight) {
            Poll::Ready(permit) => permit,
            // Items already taken cannot be handed back: a cancelled write lets them go
            // beyond the budget rather than lose them.
            Poll::Pending if finish => None,
            Poll::Pending => {
                // Woken also when this stream's last chunk lands.
                this.in_flight.0.1.register(cx.waker());
                if !this.in_flight.is_empty() {
                    return Poll::Pending;
                }
                None
            }
        };
        if permit.is_none() {
            // Sent beyond the budget: the acquire left queued in the semaphore (first in,
            // first out) would otherwise collect every permit other streams give back.
            this.budget = PollSemaphore::new(this.budget.clone_inner());
        }
        let items = this.held.take().unwrap_or_default();
        let chunk = Chunk { items, _budget: permit, _flight: this.in_flight.start() };
        match this.tx.send_item(chunk) {
            Ok(()) => Poll::Ready(Ok(StreamResult::Completed)),
            Err(_) => Poll::Ready(Ok(StreamResult::Dropped)),
        }
    }
}

/// The writing end of a stream made in the other store: hands over what arrives.
struct Feed<T> {
    rx: mpsc::Receiver<Chunk<T>>,
    /// Ends the stream when its call is stopped, whatever its writer is doing.
    cut: Watch,
    /// Dropped with this end: the other side's [`Interest`] resolves.
    _held: oneshot::Sender<()>,
}

impl<T: Item> Landing for Feed<T> {
    fn land(self: Box<Self>, mut store: StoreContextMut<'_, crate::sandbox::SandboxState>) -> wasmtime::Result<Val> {
        let reader = StreamReader::new(&mut store, *self)?;
        Ok(Val::Stream(StreamAny::try_from_stream_reader(&mut store, reader)?))
    }
}

impl<T: Item, D> StreamProducer<D> for Feed<T> {
    type Item = T;
    type Buffer = VecBuffer<T>;

    fn poll_produce<'a>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'a, D>,
        mut destination: Destination<'a, T, VecBuffer<T>>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        // A zero-length read asks whether items are ready; saying yes is allowed, and
        // the next read waits for them.
        if destination.remaining(&mut store) == Some(0) {
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        if self.cut.fired(cx) {
            // The writer can send no more; the reader gets what is on its way, then
            // sees the stream end.
            self.rx.close();
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(chunk)) => {
                destination.set_buffer(chunk.items.into());
                Poll::Ready(Ok(StreamResult::Completed))
            }
            Poll::Ready(None) => Poll::Ready(Ok(StreamResult::Dropped)),
            Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The reading end of a future taken out of its store: forwards its value.
struct FutureSink<T> {
    tx: Option<oneshot::Sender<T>>,
}

impl<T: Item, D> FutureConsumer<D> for FutureSink<T> {
    type Item = T;

    fn poll_consume(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        store: StoreContextMut<D>,
        mut source: Source<'_, T>,
        _: bool,
    ) -> Poll<wasmtime::Result<()>> {
        let mut value = None;
        source.read(store, &mut value)?;
        if let (Some(value), Some(tx)) = (value, self.tx.take()) {
            // A reader gone on the other side simply never sees it.
            let _ = tx.send(value);
        }
        Poll::Ready(Ok(()))
    }
}

/// The writing end of a future made in the other store.
struct FutureFeed<T> {
    /// `None` once it has answered.
    rx: Option<oneshot::Receiver<T>>,
    /// Dropped with this end: the other side's [`Interest`] resolves.
    _held: oneshot::Sender<()>,
    toward: Toward,
}

/// Which side of a link a stream or future is made in: what a future that will never be
/// written means there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toward {
    /// An argument: the consumer that was to write it failed or went away, which is no
    /// fault of the provider's; its read waits (within the call's deadline).
    Provider,
    /// A result: the provider failed before writing it; the consumer's read fails.
    Consumer,
}

impl<T: Item> Landing for FutureFeed<T> {
    fn land(self: Box<Self>, mut store: StoreContextMut<'_, crate::sandbox::SandboxState>) -> wasmtime::Result<Val> {
        let reader = FutureReader::new(&mut store, *self)?;
        Ok(Val::Future(FutureAny::try_from_future_reader(&mut store, reader)?))
    }
}

impl<T: Item, D> FutureProducer<D> for FutureFeed<T> {
    type Item = T;

    fn poll_produce(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _: StoreContextMut<D>,
        finish: bool,
    ) -> Poll<wasmtime::Result<Option<T>>> {
        // A oneshot must not be polled once it has answered: after that it is `None`.
        let got = match self.rx.as_mut().map(|rx| Pin::new(rx).poll(cx)) {
            Some(Poll::Ready(Ok(value))) => Some(Some(value)),
            Some(Poll::Ready(Err(_))) | None => Some(None),
            Some(Poll::Pending) => None,
        };
        if got.is_some() {
            self.rx = None;
        }
        match got {
            Some(Some(value)) => Poll::Ready(Ok(Some(value))),
            // The provider will never write it (it failed): the component model has no way
            // to say so but a trap of this future's reader, as for any call through a link
            // whose provider failed.
            Some(None) if self.toward == Toward::Consumer => Poll::Ready(Err(wasmtime::format_err!(
                "the component across the link that returned this future stopped before it wrote it"
            ))),
            // The consumer will never write it: the provider is not to blame, and waits.
            _ if finish => Poll::Ready(Ok(None)),
            _ => Poll::Pending,
        }
    }
}

/// The streams and futures among one function's parameters and results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrying {
    pub params: Vec<Option<Carried>>,
    pub results: Vec<Option<Carried>>,
}

impl Carrying {
    /// What a link must forward for `func`, or why it cannot.
    pub fn of(func: &ComponentFunc) -> Result<Carrying, String> {
        Ok(Carrying {
            params: func.params().map(|(_, ty)| Carried::of(&ty)).collect::<Result<_, _>>()?,
            results: func.results().map(|ty| Carried::of(&ty)).collect::<Result<_, _>>()?,
        })
    }

    /// Whether no stream or future crosses.
    pub fn is_empty(&self) -> bool {
        self.params.iter().chain(&self.results).all(Option::is_none)
    }

    /// Whether `func` needs the concurrent path: it is async, or streams or futures cross.
    pub fn needed(func: &ComponentFunc) -> bool {
        func.async_() || func.params().any(|(_, ty)| holds_async(&ty)) || func.results().any(|ty| holds_async(&ty))
    }
}

impl fmt::Display for Carried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Carried::Stream(kind) => write!(f, "stream<{}>", kind.wit()),
            Carried::Future(kind) => write!(f, "future<{}>", kind.wit()),
        }
    }
}

impl fmt::Display for Carrying {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |side: &[Option<Carried>]| side.iter().flatten().map(|c| c.to_string()).collect::<Vec<_>>();
        let (params, results) = (list(&self.params), list(&self.results));
        write!(f, "({}) -> ({})", params.join(", "), results.join(", "))
    }
}

impl serde::Serialize for Carrying {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
