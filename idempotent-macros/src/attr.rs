//! Parses the attribute's options, keeping the user's tokens for error spans.

use crate::errors::Errors;
use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use std::time::Duration;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Path, Token};

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

const OPTIONS: &str = "`ttl`, `wait`, `lease`, `key`, `scope`, `skip`, `name`, `store` and `crate`";
const DURATION_FORMS: &str =
    r#"a number and a unit, such as "500ms", "30s", "15m", "24h", "2d" or "1h30m""#;

/// `wait = "30s"`, parsed here, or `wait = <expr>`, a `Duration` evaluated on each call.
pub(crate) enum Wait {
    Literal(Duration),
    Expr(Expr),
}

/// The options of one `#[idempotent(..)]`, each `None` when absent.
#[derive(Default)]
pub(crate) struct Attr {
    pub(crate) ttl: Option<Duration>,
    pub(crate) wait: Option<Wait>,
    pub(crate) lease: Option<Duration>,
    pub(crate) key: Option<Ident>,
    pub(crate) scope: Option<Vec<Ident>>,
    /// Where `scope` was written, to report it when it cannot apply.
    pub(crate) scope_span: Option<Span>,
    pub(crate) skip: Option<Vec<Ident>>,
    pub(crate) name: Option<LitStr>,
    pub(crate) store: Option<Expr>,
    /// `crate = path`: where the generated code finds the `idempotency` crate.
    pub(crate) krate: Option<Path>,
    /// Every mistake in the options; each broken option is skipped, the others parsed.
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

/// Splits the attribute's tokens at its top-level commas, one piece per option, so that a
/// broken option is reported and the ones after it are still parsed. An empty piece (a
/// stray comma) is an error on that comma; a trailing comma is fine.
fn split_options(args: TokenStream, errors: &mut Errors) -> Vec<TokenStream> {
    let mut options = Vec::new();
    let mut current = TokenStream::new();
    for tree in args {
        match &tree {
            TokenTree::Punct(punct) if punct.as_char() == ',' => {
                if current.is_empty() {
                    errors.spanned(
                        punct,
                        format!("expected an option before this `,`; the options are {OPTIONS}"),
                    );
                }
                options.push(std::mem::take(&mut current));
            }
            _ => current.extend([tree]),
        }
    }
    options.push(current);
    options.retain(|option| !option.is_empty());
    options
}

/// Adds the option's form to a parse error, so the message says what to write.
fn with_form(err: &syn::Error, form: &str) -> syn::Error {
    syn::Error::new(err.span(), format!("{err}; write {form}"))
}

/// The ` = value` of `option = value`, `keyword` being the option's name as written.
fn assigned<T>(
    input: ParseStream,
    keyword: impl ToTokens,
    form: &str,
    value: fn(ParseStream) -> syn::Result<T>,
) -> syn::Result<T> {
    if input.is_empty() {
        return Err(syn::Error::new_spanned(
            keyword,
            format!("expected `=` and a value; write {form}"),
        ));
    }
    let eq: Token![=] = input.parse().map_err(|err| with_form(&err, form))?;
    if input.is_empty() {
        return Err(syn::Error::new_spanned(
            quote!(#keyword #eq),
            format!("expected a value after `=`; write {form}"),
        ));
    }
    value(input).map_err(|err| with_form(&err, form))
}

/// A parameter's name, `self` included.
fn parameter(input: ParseStream) -> syn::Result<Ident> {
    Ident::parse_any(input).map_err(|err| syn::Error::new(err.span(), "expected a parameter name"))
}

/// The `(a, b)` of `skip(a, b)` or `scope(a, b)`.
fn idents(input: ParseStream, keyword: impl ToTokens, form: &str) -> syn::Result<Vec<Ident>> {
    if !input.peek(syn::token::Paren) {
        let span = if input.is_empty() {
            keyword.into_token_stream()
        } else {
            input.parse::<TokenTree>()?.into_token_stream()
        };
        return Err(syn::Error::new_spanned(
            span,
            format!("expected a parenthesized list of parameters; write {form}"),
        ));
    }
    let content;
    syn::parenthesized!(content in input);
    let list = Punctuated::<Ident, Token![,]>::parse_terminated_with(&content, parameter)
        .map_err(|err| with_form(&err, form));
    if list.is_err() {
        // Tokens left in `content` would fail the whole option with "unexpected token".
        content.parse::<TokenStream>()?;
    }
    Ok(list?.into_iter().collect())
}

impl Attr {
    /// Parses every option, collecting each mistake into `errors` and going on with the
    /// next option, so that one build reports them all.
    pub(crate) fn new(args: TokenStream) -> Self {
        let mut attr = Attr::default();
        for option in split_options(args, &mut attr.errors) {
            let parsed = (|input: ParseStream| attr.option(input)).parse2(option.clone());
            match parsed {
                // syn would span it on the whole attribute: the option is more precise.
                Err(err) if err.to_string().starts_with("unexpected end of input") => {
                    attr.errors.spanned(option, err);
                }
                Err(err) => attr.errors.push(err),
                Ok(()) => {}
            }
        }
        attr
    }

    /// Parses one option, the tokens between two commas.
    fn option(&mut self, input: ParseStream) -> syn::Result<()> {
        let errors = &mut self.errors;
        let span = input.span();
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::ttl) {
            let kw: kw::ttl = input.parse()?;
            let lit = assigned(input, kw, r#"`ttl = "24h"`"#, <LitStr as Parse>::parse)?;
            let value = duration(&lit, "ttl", false, errors);
            set(&mut self.ttl, value, span, "ttl", errors);
        } else if lookahead.peek(kw::wait) {
            let kw: kw::wait = input.parse()?;
            let form = r#"`wait = "30s"` or `wait = <expression of type std::time::Duration>`"#;
            let value = match assigned(input, kw, form, Expr::parse)? {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(lit), ..
                }) => Wait::Literal(duration(&lit, "wait", true, errors)),
                // A number has no unit: "seconds" would be a guess.
                Expr::Lit(ExprLit { lit, .. }) => {
                    let text = lit.to_token_stream();
                    errors.spanned(
                        &lit,
                        format!("`wait = {text}` is not a duration; write {DURATION_FORMS}, or an expression of type `std::time::Duration`"),
                    );
                    Wait::Literal(Duration::ZERO)
                }
                expr => Wait::Expr(expr),
            };
            set(&mut self.wait, value, span, "wait", errors);
        } else if lookahead.peek(kw::lease) {
            let kw: kw::lease = input.parse()?;
            let lit = assigned(input, kw, r#"`lease = "30s"`"#, <LitStr as Parse>::parse)?;
            let value = duration(&lit, "lease", false, errors);
            set(&mut self.lease, value, span, "lease", errors);
        } else if lookahead.peek(kw::key) {
            let kw: kw::key = input.parse()?;
            let value = assigned(input, kw, "`key = <parameter>`", parameter)?;
            set(&mut self.key, value, span, "key", errors);
        } else if lookahead.peek(kw::scope) {
            let kw: kw::scope = input.parse()?;
            let value = idents(input, kw, "`scope(<parameter>, ..)`")?;
            self.scope_span.get_or_insert(span);
            set(&mut self.scope, value, span, "scope", errors);
        } else if lookahead.peek(kw::skip) {
            let kw: kw::skip = input.parse()?;
            let value = idents(input, kw, "`skip(<parameter>, ..)`")?;
            set(&mut self.skip, value, span, "skip", errors);
        } else if lookahead.peek(kw::name) {
            let kw: kw::name = input.parse()?;
            let value = assigned(
                input,
                kw,
                r#"`name = "orders.create"`"#,
                <LitStr as Parse>::parse,
            )?;
            if value.value().trim().is_empty() {
                errors.spanned(&value, "`name` must not be empty");
            }
            set(&mut self.name, value, span, "name", errors);
        } else if lookahead.peek(kw::store) {
            let kw: kw::store = input.parse()?;
            let value = assigned(input, kw, "`store = <expression>`", Expr::parse)?;
            set(&mut self.store, value, span, "store", errors);
        } else if lookahead.peek(Token![crate]) {
            let kw: Token![crate] = input.parse()?;
            let form = "`crate = <path to the idempotency crate>`, such as `crate = ::idem`";
            let value = assigned(input, kw, form, Path::parse_mod_style)?;
            set(&mut self.krate, value, span, "crate", errors);
        } else if input.peek(Ident::peek_any) {
            let unknown = Ident::parse_any(input)?;
            // Its value, if any, is the rest of this option: nothing more to report.
            input.parse::<TokenStream>()?;
            return Err(syn::Error::new_spanned(
                &unknown,
                format!("unknown option `{unknown}`; the options are {OPTIONS}"),
            ));
        } else {
            return Err(lookahead.error());
        }
        if !input.is_empty() {
            return Err(input.error("expected `,` before the next option"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(args: TokenStream) -> Vec<String> {
        Attr::new(args).errors.messages()
    }

    #[test]
    fn every_broken_option_is_reported_and_the_rest_parsed() {
        let attr = Attr::new(quote!(ttl = , wait = "x", bogus, skip(a,,b), lease = "1s"));
        let errors = attr.errors.messages();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(
            errors[0].starts_with("expected a value after `=`"),
            "{errors:#?}"
        );
        assert!(
            errors[1].starts_with(r#"`wait = "x"` is not a duration"#),
            "{errors:#?}"
        );
        assert!(
            errors[2].starts_with("unknown option `bogus`"),
            "{errors:#?}"
        );
        assert!(
            errors[3].starts_with("expected a parameter name; write `skip(<parameter>, ..)`"),
            "{errors:#?}"
        );
        assert_eq!(attr.lease, Some(Duration::from_secs(1)));
    }

    #[test]
    fn structural_mistakes_say_what_to_write() {
        for (args, message) in [
            (quote!(wait "30s"), r#"expected `=`; write `wait = "30s"` or `wait = <expression of type std::time::Duration>`"#),
            (quote!(wait = 30), r#"`wait = 30` is not a duration; write a number and a unit"#),
            (quote!(ttl), r#"expected `=` and a value; write `ttl = "24h"`"#),
            (quote!(ttl = 5), r#"expected string literal; write `ttl = "24h"`"#),
            (quote!(ttl = "1h" wait = "1s"), "expected `,` before the next option"),
            (quote!(skip self), "expected a parenthesized list of parameters; write `skip(<parameter>, ..)`"),
            (quote!(key = "id"), "expected a parameter name; write `key = <parameter>`"),
            (quote!(crate = "idem"), "expected identifier; write `crate = <path to the idempotency crate>`, such as `crate = ::idem`"),
            (quote!(crate = ::idem::), "unexpected end of input, expected path segment after `::`; write `crate = <path to the idempotency crate>`, such as `crate = ::idem`"),
            (quote!(store = ), r#"expected a value after `=`; write `store = <expression>`"#),
            (quote!(ttl = "1h",, wait = "1s"), "expected an option before this `,`"),
            (quote!("30s"), "expected one of:"),
        ] {
            let errors = messages(args.clone());
            assert_eq!(errors.len(), 1, "{args}: {errors:#?}");
            assert!(errors[0].starts_with(message), "{args}: {errors:#?}");
        }
    }

    #[test]
    fn wait_takes_a_literal_or_an_expression() {
        let attr = Attr::new(quote!(wait = "1m"));
        assert!(matches!(attr.wait, Some(Wait::Literal(d)) if d == Duration::from_secs(60)));
        for expr in [
            quote!(Duration::ZERO),
            quote!(settings::wait()),
            quote!(self.wait),
            quote!(if fast {
                Duration::ZERO
            } else {
                Duration::from_secs(30)
            }),
        ] {
            let attr = Attr::new(quote!(wait = #expr, ttl = "1h"));
            assert!(
                attr.errors.is_empty(),
                "{expr}: {:#?}",
                attr.errors.messages()
            );
            let Some(Wait::Expr(parsed)) = &attr.wait else {
                panic!("{expr}: not an expression");
            };
            assert_eq!(parsed.to_token_stream().to_string(), expr.to_string());
        }
        assert_eq!(
            messages(quote!(wait = "1s", wait = Duration::ZERO)),
            ["`wait` is given twice; keep one"]
        );
    }

    #[test]
    fn crate_takes_a_path_once() {
        let attr = Attr::new(quote!(crate = crate::reexport::idem, ttl = "1h"));
        assert!(attr.errors.is_empty());
        let path = attr.krate.as_ref().map(|p| p.to_token_stream().to_string());
        assert_eq!(path.as_deref(), Some("crate :: reexport :: idem"));
        assert_eq!(
            messages(quote!(crate = ::a, crate = ::b)),
            ["`crate` is given twice; keep one"]
        );
        assert!(messages(quote!(crate = my_sdk::idempotency,)).is_empty());
    }
}
