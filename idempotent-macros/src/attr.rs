//! Parses the attribute's options, keeping the user's tokens for error spans.

use crate::errors::Errors;
use proc_macro2::Span;
use std::time::Duration;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, LitStr, Token};

mod kw {
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(wait);
    syn::custom_keyword!(lease);
    syn::custom_keyword!(key);
    syn::custom_keyword!(scope);
    syn::custom_keyword!(skip);
    syn::custom_keyword!(name);
    syn::custom_keyword!(store);
}

const OPTIONS: &str = "`ttl`, `wait`, `lease`, `key`, `scope`, `skip`, `name` and `store`";
const DURATION_FORMS: &str =
    r#"a number and a unit, such as "500ms", "30s", "15m", "24h", "2d" or "1h30m""#;

/// The options of one `#[idempotent(..)]`, each `None` when absent.
#[derive(Default)]
pub(crate) struct Attr {
    pub(crate) ttl: Option<Duration>,
    pub(crate) wait: Option<Duration>,
    pub(crate) lease: Option<Duration>,
    pub(crate) key: Option<Ident>,
    pub(crate) scope: Option<Vec<Ident>>,
    /// Where `scope` was written, to report it when it cannot apply.
    pub(crate) scope_span: Option<Span>,
    pub(crate) skip: Option<Vec<Ident>>,
    pub(crate) name: Option<LitStr>,
    pub(crate) store: Option<Expr>,
    /// Errors that did not stop parsing: bad values, repeated options.
    pub(crate) errors: Errors,
}

/// Sets an option once; a repeat is an error on the repeated option's name.
fn set<T>(slot: &mut Option<T>, value: T, option: Span, name: &str, errors: &mut Errors) {
    if slot.is_some() {
        errors.push(syn::Error::new(
            option,
            format!("`{name}` is given twice; keep one"),
        ));
    } else {
        *slot = Some(value);
    }
}

/// Parses a duration literal at compile time; a bad one is an error on the literal.
fn duration(lit: &LitStr, option: &str, zero_ok: bool, errors: &mut Errors) -> Duration {
    let text = lit.value();
    match humantime::parse_duration(text.trim()) {
        Ok(value) if value.is_zero() && !zero_ok => {
            errors.spanned(
                lit,
                format!("`{option}` must be longer than zero; write {DURATION_FORMS}"),
            );
            value
        }
        Ok(value) => value,
        Err(err) => {
            errors.spanned(
                lit,
                format!("`{option} = {text:?}` is not a duration ({err}); write {DURATION_FORMS}"),
            );
            Duration::ZERO
        }
    }
}

fn idents(input: ParseStream) -> syn::Result<Vec<Ident>> {
    let content;
    syn::parenthesized!(content in input);
    let list = Punctuated::<Ident, Token![,]>::parse_terminated_with(&content, Ident::parse_any)?;
    Ok(list.into_iter().collect())
}

impl Parse for Attr {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut attr = Attr::default();
        let errors = &mut attr.errors;
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            let span = input.span();
            if lookahead.peek(kw::ttl) {
                input.parse::<kw::ttl>()?;
                input.parse::<Token![=]>()?;
                let value = duration(&input.parse()?, "ttl", false, errors);
                set(&mut attr.ttl, value, span, "ttl", errors);
            } else if lookahead.peek(kw::wait) {
                input.parse::<kw::wait>()?;
                input.parse::<Token![=]>()?;
                let value = duration(&input.parse()?, "wait", true, errors);
                set(&mut attr.wait, value, span, "wait", errors);
            } else if lookahead.peek(kw::lease) {
                input.parse::<kw::lease>()?;
                input.parse::<Token![=]>()?;
                let value = duration(&input.parse()?, "lease", false, errors);
                set(&mut attr.lease, value, span, "lease", errors);
            } else if lookahead.peek(kw::key) {
                input.parse::<kw::key>()?;
                input.parse::<Token![=]>()?;
                let value = Ident::parse_any(input)?;
                set(&mut attr.key, value, span, "key", errors);
            } else if lookahead.peek(kw::scope) {
                input.parse::<kw::scope>()?;
                let value = idents(input)?;
                attr.scope_span.get_or_insert(span);
                set(&mut attr.scope, value, span, "scope", errors);
            } else if lookahead.peek(kw::skip) {
                input.parse::<kw::skip>()?;
                let value = idents(input)?;
                set(&mut attr.skip, value, span, "skip", errors);
            } else if lookahead.peek(kw::name) {
                input.parse::<kw::name>()?;
                input.parse::<Token![=]>()?;
                let value: LitStr = input.parse()?;
                if value.value().trim().is_empty() {
                    errors.spanned(&value, "`name` must not be empty");
                }
                set(&mut attr.name, value, span, "name", errors);
            } else if lookahead.peek(kw::store) {
                input.parse::<kw::store>()?;
                input.parse::<Token![=]>()?;
                let value: Expr = input.parse()?;
                set(&mut attr.store, value, span, "store", errors);
            } else if input.peek(Ident::peek_any) {
                let unknown = Ident::parse_any(input)?;
                errors.spanned(
                    &unknown,
                    format!("unknown option `{unknown}`; the options are {OPTIONS}"),
                );
                // Skip its value, so the options after it are still checked.
                while !input.is_empty() && !input.peek(Token![,]) {
                    input.parse::<proc_macro2::TokenTree>()?;
                }
            } else {
                return Err(lookahead.error());
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(attr)
    }
}
