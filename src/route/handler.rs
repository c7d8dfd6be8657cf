//! Handlers: plain `async fn`s whose arguments are extractors.
//!
//! Any `Fn(T1, …, Tn) -> impl Future<Output = impl IntoResponse>` with up to
//! twelve [`FromRequest`] arguments is a [`Handler`]. Extractors run in
//! order (each may await) and produce owned values, so the handler's own
//! future borrows nothing from the request. Futures need not be `Send`:
//! they run on their shard.
//! A call returns its future in inline storage (no allocation per request for
//! futures up to 256 bytes).

use std::future::Future;
use std::marker::PhantomData;

use smallbox::{SmallBox, smallbox};

use super::extract::FromRequest;
use crate::http::describe::Operation;
use crate::http::request::Request;
use crate::http::response::IntoResponse;
use crate::http::write::ResponseWriter;

/// The future of one handler call; it writes the response when done.
/// Held inline in 32 words (256 bytes); larger futures are boxed.
pub(crate) type HandlerFuture<'a> = SmallBox<dyn Future<Output = ()> + 'a, smallbox::space::S32>;

/// Something that answers requests: implemented for `async fn`s whose
/// arguments are extractors. `S` is the shard state type, `Args` the
/// argument tuple (inferred).
pub trait Handler<S, Args>: Clone + Send + Sync + 'static {
    /// Extracts the arguments from `request` and starts the call. When an
    /// extractor rejects the request, the future writes that rejection.
    fn call<'a>(
        &'a self,
        request: &'a mut Request<'_>,
        state: &'a S,
        writer: &'a mut ResponseWriter<'_>,
    ) -> HandlerFuture<'a>;

    /// Whether an argument reads the body while it arrives.
    fn streams_body(&self) -> bool;

    /// The route's OpenAPI operation: what the arguments read and the
    /// return type answers.
    fn describe(&self, operation: &mut Operation);
}

macro_rules! handler_for_arity {
    ($($arg:ident),*) => {
        impl<S, F, Fut, R, $($arg,)*> Handler<S, ($($arg,)*)> for F
        where
            F: Fn($($arg),*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = R> + 'static,
            R: IntoResponse + 'static,
            S: 'static,
            $($arg: FromRequest<S> + 'static,)*
        {
            #[allow(non_snake_case, unused_variables, reason = "argument names come from the macro")]
            fn call<'a>(
                &'a self,
                request: &'a mut Request<'_>,
                state: &'a S,
                writer: &'a mut ResponseWriter<'_>,
            ) -> HandlerFuture<'a> {
                smallbox!(async move {
                    $(
                        let $arg = match $arg::from_request(request, state).await {
                            Ok(value) => value,
                            Err(rejection) => return rejection.write_response(writer),
                        };
                    )*
                    (self)($($arg),*).await.write_response(writer);
                })
            }

            fn streams_body(&self) -> bool {
                false $(|| $arg::STREAMS_BODY)*
            }

            fn describe(&self, operation: &mut Operation) {
                $($arg::describe(operation);)*
                R::describe(operation);
            }
        }
    };
}

handler_for_arity!();
handler_for_arity!(T1);
handler_for_arity!(T1, T2);
handler_for_arity!(T1, T2, T3);
handler_for_arity!(T1, T2, T3, T4);
handler_for_arity!(T1, T2, T3, T4, T5);
handler_for_arity!(T1, T2, T3, T4, T5, T6);
handler_for_arity!(T1, T2, T3, T4, T5, T6, T7);
handler_for_arity!(T1, T2, T3, T4, T5, T6, T7, T8);
handler_for_arity!(T1, T2, T3, T4, T5, T6, T7, T8, T9);
handler_for_arity!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10);
handler_for_arity!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11);
handler_for_arity!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12);

/// A handler with its argument types erased, as the router stores it.
pub(crate) trait ErasedHandler<S>: Send + Sync {
    fn call<'a>(
        &'a self,
        request: &'a mut Request<'_>,
        state: &'a S,
        writer: &'a mut ResponseWriter<'_>,
    ) -> HandlerFuture<'a>;

    fn streams_body(&self) -> bool;

    fn describe(&self, operation: &mut Operation);
}

pub(crate) struct Erased<H, Args> {
    handler: H,
    _args: PhantomData<fn() -> Args>,
}

impl<H, Args> Erased<H, Args> {
    pub(crate) fn new(handler: H) -> Self {
        Self {
            handler,
            _args: PhantomData,
        }
    }
}

impl<S: 'static, H: Handler<S, Args>, Args: 'static> ErasedHandler<S> for Erased<H, Args> {
    fn call<'a>(
        &'a self,
        request: &'a mut Request<'_>,
        state: &'a S,
        writer: &'a mut ResponseWriter<'_>,
    ) -> HandlerFuture<'a> {
        self.handler.call(request, state, writer)
    }

    fn streams_body(&self) -> bool {
        self.handler.streams_body()
    }

    fn describe(&self, operation: &mut Operation) {
        self.handler.describe(operation);
    }
}
