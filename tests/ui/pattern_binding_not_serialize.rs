// A variable a pattern binds takes part in the key like a parameter of its name: it must
// implement `Serialize`, and the error is on the variable.
use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

struct State<T>(T);
struct Connection;

#[idempotent]
async fn charge(customer: u64, State(db): State<Connection>) -> Result<u64, AppError> {
    let _ = db;
    Ok(customer)
}

fn main() {}
