//! The `#[idempotent]` attribute. Depend on the `idempotency` crate, which re-exports it
//! with its documentation and the runtime the generated code calls.
//!
//! The work happens on `proc_macro2` tokens in four steps, one file each: `attr.rs` parses
//! the options, `ast.rs` gives a typed view of the function, `valid.rs` checks both and
//! plans the key, `expand.rs` writes the code.

mod ast;
mod attr;
mod errors;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Makes an `async fn` idempotent. See the `idempotency` crate for the options and the
/// guarantees.
#[proc_macro_attribute]
pub fn idempotent(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::idempotent(args.into(), item.into()).into()
}
