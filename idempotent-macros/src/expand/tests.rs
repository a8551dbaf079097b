//! Expansion snapshots: each case below is expanded, pretty-printed with `prettyplease` and
//! compared, exactly, with `idempotent-macros/tests/expand/<case>.expanded.rs`. The files
//! show what the attribute writes; a change to the generated code shows up as their diff.
//!
//! When the expansion changes on purpose (say the runtime's `__private` calls change),
//! rewrite them and read the diff:
//!
//! ```text
//! IDEMPOTENT_BLESS=1 cargo test -p idempotent-macros expand
//! git diff idempotent-macros/tests/expand
//! ```
//!
//! Besides the snapshots, every case checks what no snapshot should be trusted to show:
//! the user's block is emitted exactly once, and with `crate = ..` no path of the
//! generated code names `idempotency` itself.

use super::idempotent;
use proc_macro2::{TokenStream, TokenTree};
use quote::quote;
use std::path::PathBuf;

/// A string literal in every case's body: how often it appears is how often the block does.
const BLOCK_MARKER: &str = "the user's block";

struct Case {
    name: &'static str,
    args: TokenStream,
    item: TokenStream,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "plain_args",
            args: quote!(),
            item: quote! {
                async fn charge(customer: u64, cents: u64) -> Result<u64, AppError> {
                    let _ = "the user's block";
                    Ok(customer + cents)
                }
            },
        },
        Case {
            name: "client_key_scope_skip",
            args: quote! {
                key = request_id, scope(tenant), skip(db), ttl = "1h", name = "payments.charge"
            },
            item: quote! {
                pub async fn charge(
                    request_id: String,
                    tenant: u64,
                    db: Connection,
                    cents: u64,
                ) -> Result<Receipt, AppError> {
                    let _ = ("the user's block", db);
                    Ok(Receipt { cents })
                }
            },
        },
        Case {
            name: "method_with_generics",
            args: quote!(skip(self), store = self.store),
            item: quote! {
                async fn apply<'a, T: Serialize + Send, const N: usize>(
                    &'a self,
                    item: T,
                    tag: impl Serialize + Send,
                ) -> Result<[u8; N], AppError>
                where
                    T: Sync,
                {
                    let _ = ("the user's block", item, tag);
                    Ok([0; N])
                }
            },
        },
        Case {
            name: "outcome_return",
            args: quote!(wait = "0s", lease = "30s"),
            item: quote! {
                async fn charge(customer: u64) -> Result<Outcome<Receipt>, AppError> {
                    let _ = "the user's block";
                    Ok(Outcome::fresh(Receipt { cents: customer }))
                }
            },
        },
        Case {
            name: "pattern_params_and_wait_expr",
            args: quote! {
                key = key, scope(tenant), skip(db), ttl = "24h", wait = settings::wait()
            },
            item: quote! {
                async fn create_order(
                    State(db): State<Db>,
                    tenant: Tenant,
                    key: IdempotencyKey,
                    Json(order): Json<NewOrder>,
                    Path((shop, ref aisle)): Path<(u32, String)>,
                    Query(Filter { sort, limit: max, .. }): Query<Filter>,
                    _: Extension<Tracing>,
                ) -> Result<Created<Order>, ApiError> {
                    let _ = ("the user's block", db, order, shop, aisle, sort, max);
                    Ok(Created(Order { id: 1 }))
                }
            },
        },
        Case {
            name: "crate_path",
            args: quote!(crate = ::my_sdk::idem),
            item: quote! {
                async fn charge(customer: u64) -> Result<u64, AppError> {
                    let _ = "the user's block";
                    Ok(customer)
                }
            },
        },
    ]
}

fn pretty(tokens: TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens).expect("the expansion is a valid item");
    prettyplease::unparse(&file)
}

/// Calls `visit` on every token, groups' contents included.
fn walk(tokens: TokenStream, visit: &mut impl FnMut(&TokenTree)) {
    for tree in tokens {
        visit(&tree);
        if let TokenTree::Group(group) = &tree {
            walk(group.stream(), visit);
        }
    }
}

fn count_block_markers(tokens: &TokenStream) -> usize {
    let marker = format!("{BLOCK_MARKER:?}");
    let mut count = 0;
    walk(tokens.clone(), &mut |tree| {
        if matches!(tree, TokenTree::Literal(lit) if lit.to_string() == marker) {
            count += 1;
        }
    });
    count
}

#[test]
fn expansions_match_their_snapshots() {
    let bless = std::env::var_os("IDEMPOTENT_BLESS").is_some();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/expand");
    let mut stale = Vec::new();
    for case in cases() {
        let expanded = idempotent(case.args, case.item);
        assert_eq!(
            count_block_markers(&expanded),
            1,
            "{}: the user's block must be emitted exactly once",
            case.name
        );
        let actual = pretty(expanded);
        assert!(
            !actual.contains("compile_error"),
            "{}: the case does not compile:\n{actual}",
            case.name
        );
        let path = dir.join(format!("{}.expanded.rs", case.name));
        if bless {
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        if expected != actual {
            eprintln!("--- {}\n+++ actual\n{actual}", path.display());
            stale.push(case.name);
        }
    }
    assert!(
        stale.is_empty(),
        "stale expansion snapshots: {stale:?}; if the change is intended, rerun with \
         IDEMPOTENT_BLESS=1 and read the diff of idempotent-macros/tests/expand"
    );
}

/// With `crate = ..`, every path of the generated code goes through it: not one
/// `idempotency` is left for a crate that renamed or re-exports it.
#[test]
fn crate_path_replaces_every_idempotency_path() {
    for case in cases() {
        let args = if case.args.is_empty() {
            quote!(crate = ::renamed)
        } else if case.args.to_string().contains("crate") {
            // `crate = ::my_sdk::idem`, left as it is.
            case.args
        } else {
            let args = case.args;
            quote!(#args, crate = ::renamed)
        };
        let expanded = idempotent(args, case.item);
        let mut idempotency = 0;
        let mut renamed = 0;
        walk(expanded.clone(), &mut |tree| match tree {
            TokenTree::Ident(ident) if ident == "idempotency" => idempotency += 1,
            TokenTree::Ident(ident) if ident == "renamed" || ident == "my_sdk" => renamed += 1,
            _ => {}
        });
        let expanded = pretty(expanded);
        assert!(
            !expanded.contains("compile_error"),
            "{}:\n{expanded}",
            case.name
        );
        assert_eq!(idempotency, 0, "{}:\n{expanded}", case.name);
        assert!(renamed > 0, "{}: the given path is used", case.name);
    }
}

#[test]
fn a_broken_attribute_keeps_the_function_and_its_block_once() {
    let expanded = idempotent(
        quote!(ttl = , wait = "x", bogus),
        quote! {
            async fn charge(customer: u64) -> Result<u64, AppError> {
                let _ = "the user's block";
                Ok(customer)
            }
        },
    );
    assert_eq!(count_block_markers(&expanded), 1);
    let mut errors = 0;
    walk(expanded, &mut |tree| {
        if matches!(tree, TokenTree::Ident(ident) if ident == "compile_error") {
            errors += 1;
        }
    });
    assert_eq!(errors, 3);
}
