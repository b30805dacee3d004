//! Middleware that looks at a request on its way in and at its answer on the way out, with
//! nothing boxed of its own: [`around`].
//!
//! axum's `from_fn` is the easy way to write such a layer, but each call through it boxes the
//! middleware's async block, boxes a clone of the rest of the stack as `Next`, and boxes that
//! call's future again. A long-waiting agent holds all of it for the whole wait, through every
//! layer: with three such layers it was 4.4 KB of a waiter's 22 (see the README, "Memory per
//! waiting agent"). Here the work before the call is a plain function of the request, what it
//! returns is the work after, and the future that joins them holds the inner call's future
//! inline.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use tower::{Layer, Service};

/// A layer that calls `before` with each request (which it may change) and applies what
/// `before` returned to the answer.
pub fn around<B, A>(before: B) -> Around<B>
where
    B: Fn(&mut Request) -> A + Clone,
    A: FnOnce(Response) -> Response,
{
    Around { before }
}

/// The layer [`around`] makes.
#[derive(Clone)]
pub struct Around<B> {
    before: B,
}

impl<S, B: Clone> Layer<S> for Around<B> {
    type Service = AroundService<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        AroundService {
            inner,
            before: self.before.clone(),
        }
    }
}

/// The service [`Around`] wraps around the inner one.
#[derive(Clone)]
pub struct AroundService<S, B> {
    inner: S,
    before: B,
}

impl<S, B, A> Service<Request> for AroundService<S, B>
where
    S: Service<Request, Response = Response>,
    B: Fn(&mut Request) -> A,
    A: FnOnce(Response) -> Response,
{
    type Response = Response;
    type Error = S::Error;
    type Future = AroundFuture<S::Future, A>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let after = (self.before)(&mut req);
        AroundFuture {
            inner: self.inner.call(req),
            after: Some(after),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner call's future, and what to do with its answer.
    pub struct AroundFuture<F, A> {
        #[pin]
        inner: F,
        after: Option<A>,
    }
}

impl<F, E, A> Future for AroundFuture<F, A>
where
    F: Future<Output = Result<Response, E>>,
    A: FnOnce(Response) -> Response,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        // `after` is gone only if this future is polled again after it was ready, which the
        // contract of `Future` rules out; the inner future's second answer then goes as it is.
        Poll::Ready(Ok(match this.after.take() {
            Some(after) => after(response),
            None => response,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{HeaderValue, StatusCode};
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[tokio::test]
    async fn before_sees_the_request_and_its_answer_goes_through_after() {
        let router = Router::new()
            .route(
                "/seen",
                get(|req: Request| async move {
                    let seen = req.headers().contains_key("x-before");
                    (StatusCode::CREATED, if seen { "seen" } else { "not seen" })
                }),
            )
            .layer(around(|req: &mut Request| {
                req.headers_mut()
                    .insert("x-before", HeaderValue::from_static("1"));
                let path = req.uri().path().to_string();
                move |mut res: Response| {
                    res.headers_mut()
                        .insert("x-path", HeaderValue::try_from(path).expect("a path"));
                    res
                }
            }));
        let res = router
            .oneshot(
                axum::http::Request::get("/seen")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answered");
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(res.headers()["x-path"], "/seen");
        let body = axum::body::to_bytes(res.into_body(), 64)
            .await
            .expect("body");
        assert_eq!(&body[..], b"seen");
    }
}
