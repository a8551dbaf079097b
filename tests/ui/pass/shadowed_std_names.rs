// The generated code names everything by absolute path, so items of the user's crate that
// shadow the prelude or `core`/`std` do not change its meaning (as serde's test_gen.rs).
#![allow(dead_code, non_camel_case_types, clippy::all)]

use idempotency::idempotent;

struct Result;
struct Ok;
struct Err;
struct Some;
struct None;
struct Option;
struct Box;
struct String;
struct Vec;
struct Send;
struct Sync;
struct Sized;
struct Future;
struct Duration;
struct Serialize;
struct Deserialize;
struct From;
struct Into;
struct AsRef;
struct Default;
struct Clone;
struct Copy;
struct Drop;
struct Fn;
struct derivation;
struct fake_return;
struct execute;
struct loop_;
mod core {}
mod std {}
mod alloc {}
mod serde {}
mod idempotent_runtime {}
mod __private {}

#[derive(Debug)]
struct AppError;

impl ::core::convert::From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

#[idempotent(ttl = "1h", lease = "10s")]
async fn charge(customer: u64, cents: u64) -> ::core::result::Result<u64, AppError> {
    ::core::result::Result::Ok(customer + cents)
}

#[idempotent(key = request_id, scope(tenant), skip(db), name = "shadowed.refund")]
async fn refund(
    request_id: ::std::string::String,
    tenant: u64,
    db: u8,
    cents: u64,
) -> ::core::result::Result<u64, AppError> {
    let _ = (request_id, tenant, db);
    ::core::result::Result::Ok(cents)
}

#[idempotent]
async fn echo<T>(value: T) -> ::core::result::Result<T, AppError>
where
    T: ::serde::Serialize + ::serde::de::DeserializeOwned,
{
    ::core::result::Result::Ok(value)
}

// Nor does the generated code lean on the prelude.
#[no_implicit_prelude]
mod no_prelude {
    #[::idempotency::idempotent(ttl = "1h", skip(note))]
    async fn charge(customer: u64, note: &str) -> ::core::result::Result<u64, super::AppError> {
        let _ = note;
        ::core::result::Result::Ok(customer)
    }
}

fn main() {}
