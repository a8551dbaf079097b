// `skip(..)` names the variable a pattern binds, not the extractor's type.
use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

struct State<T>(T);
struct Db;

#[idempotent(skip(state))]
async fn charge(State(db): State<Db>, customer: u64) -> Result<u64, AppError> {
    let _ = db;
    Ok(customer)
}

fn main() {}
