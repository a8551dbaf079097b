// An HTTP response is what a value becomes, not a value to store and replay.
use idempotency::idempotent;
use serde::Serialize;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

// Stand-ins for axum's: the check goes by name.
struct Json<T>(T);
struct Response;
struct StatusCode;
struct Html<T>(T);

#[derive(Serialize)]
struct Order {
    id: u64,
}

#[idempotent]
async fn json(id: u64) -> Result<Json<Order>, AppError> {
    Ok(Json(Order { id }))
}

#[idempotent]
async fn response(id: u64) -> Result<Response, AppError> {
    let _ = id;
    Ok(Response)
}

#[idempotent]
async fn created(id: u64) -> Result<(StatusCode, Json<Order>), AppError> {
    Ok((StatusCode, Json(Order { id })))
}

#[idempotent]
async fn page(id: u64) -> Result<Html<String>, AppError> {
    Ok(Html(id.to_string()))
}

fn main() {}
