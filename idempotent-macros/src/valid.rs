//! Every semantic check of the attribute against the function, and the plan they yield:
//! which parameters go where.

use crate::ast::{self, Function, Param, Var};
use crate::attr::Attr;
use crate::errors::Errors;
use std::collections::BTreeMap;
use syn::ext::IdentExt;
use syn::{GenericArgument, Ident, PathArguments, ReturnType, Type};

/// Where the parameters go, each list in ascending order of names (the key format).
pub(crate) struct Plan {
    /// Hashed into the key: every parameter not skipped (derived keys) or the `scope(..)`
    /// parameters (client-supplied keys).
    pub(crate) key_args: Vec<Ident>,
    /// Hashed into the fingerprint (client-supplied keys only).
    pub(crate) payload_args: Vec<Ident>,
    /// The `key = ..` parameter.
    pub(crate) client_key: Option<Ident>,
}

/// The name a parameter is keyed by: `r#type` is `type`.
fn name_of(ident: &Ident) -> String {
    ident.unraw().to_string()
}

/// Checks `attr` against `function`, reporting every problem into `errors`.
pub(crate) fn check(attr: &Attr, function: &Function, errors: &mut Errors) -> Plan {
    let sig = &function.item.sig;
    let ret = match &sig.output {
        ReturnType::Type(_, ty) => Some(&**ty),
        ReturnType::Default => None,
    };
    let impl_future = ret.is_some_and(ast::is_impl_future);
    match ret {
        Some(ret) if impl_future => errors.spanned(
            ret,
            format!(
                "`#[idempotent]` rewrites the body of an `async fn` and decodes replays into its declared result, which `impl Future` hides; make it `async fn {}(..)` returning the future's `Output` type",
                sig.ident,
            ),
        ),
        Some(ret) if ast::contains_impl_trait(ret) => errors.spanned(
            ret,
            "the return type of an `#[idempotent]` function must be nameable: a replay decodes the stored result into it, and an `impl Trait` names no type to decode into; write the concrete type, such as `Result<Receipt, AppError>`",
        ),
        _ => {}
    }
    if let Some(ok) = ret.and_then(http_response_ok) {
        errors.spanned(
            ok,
            "an HTTP response is not a stored value: return the value itself, e.g. `Created<T>` (201 fresh, 200 replayed) or `Outcome<T>`, and let it become the response",
        );
    }
    // An `impl Future` return has had its error: "make it `async`" would say it twice.
    if sig.asyncness.is_none() && !impl_future {
        errors.spanned(
            sig.fn_token,
            "`#[idempotent]` needs an `async fn`: duplicates wait for the first call without blocking a thread; make the function `async`",
        );
    }
    if let ReturnType::Default = sig.output {
        errors.spanned(
            &sig.ident,
            "an `#[idempotent]` function must return `Result<T, E>`: only `Ok` results are stored and replayed; return `Result<(), E>` if there is no value to replay",
        );
    }

    // The variables by name: those of plain parameters and those patterns bind alike.
    let mut named: BTreeMap<String, &Var> = BTreeMap::new();
    for param in &function.params {
        match param {
            Param::Typed { vars } => {
                for var in vars {
                    named.insert(var.name(), var);
                }
            }
            Param::Opaque { tokens } => errors.spanned(
                tokens,
                "`#[idempotent]` keys arguments by the variables their patterns bind, and a macro hides them: write the pattern out, or bind the parameter to a name",
            ),
            Param::Receiver { .. } => {}
        }
    }
    let vars_hint = if function.has_pattern() {
        let vars: Vec<String> = named.keys().map(|name| format!("`{name}`")).collect();
        format!(
            "; a destructured parameter is named by the variables it binds ({})",
            vars.join(", ")
        )
    } else {
        String::new()
    };

    let mut known = |ident: &Ident, option: &str| -> bool {
        let found =
            named.contains_key(&name_of(ident)) || ident == "self" && function.has_receiver();
        if !found {
            errors.spanned(
                ident,
                format!("`{option}` names `{ident}`, but the function has no parameter `{ident}`{vars_hint}"),
            );
        }
        found
    };
    let mut skip = Vec::new();
    for ident in attr.skip.iter().flatten() {
        if known(ident, "skip") {
            skip.push(name_of(ident));
        }
    }
    let mut scope = Vec::new();
    for ident in attr.scope.iter().flatten() {
        if known(ident, "scope") {
            scope.push(name_of(ident));
        }
    }
    let client_key = attr.key.as_ref().filter(|ident| known(ident, "key"));

    for list in [&attr.skip, &attr.scope].into_iter().flatten() {
        let mut seen = Vec::new();
        for ident in list {
            if seen.contains(&ident) {
                errors.spanned(ident, format!("`{ident}` is listed twice"));
            }
            seen.push(ident);
        }
    }
    if let Some(key) = client_key {
        if skip.contains(&name_of(key)) {
            errors.spanned(
                key,
                format!("`{key}` is the idempotency key, so it cannot be skipped; remove it from `skip(..)`"),
            );
        }
        if scope.contains(&name_of(key)) {
            errors.spanned(
                key,
                format!("`{key}` is the idempotency key; `scope(..)` lists the parameters that partition it, so remove `{key}` from `scope(..)`"),
            );
        }
        if key == "self" {
            errors.spanned(
                key,
                "`self` cannot be the idempotency key; name a parameter",
            );
        }
    }
    if let (None, Some(span)) = (&attr.key, attr.scope_span) {
        errors.push(syn::Error::new(
            span,
            "`scope(..)` partitions a client-supplied key, and this function has none: \
             every parameter not skipped is already part of its key; add `key = <parameter>` \
             or remove `scope(..)`",
        ));
    }
    for ident in attr.scope.iter().flatten() {
        if skip.contains(&name_of(ident)) {
            errors.spanned(
                ident,
                format!("`{ident}` is both in `scope(..)` and in `skip(..)`; a scope is part of the key, so remove it from one"),
            );
        }
        if ident == "self" {
            errors.spanned(
                ident,
                "`self` cannot be part of the key; scope by a parameter instead",
            );
        }
    }
    for param in &function.params {
        if let Param::Receiver { tokens } = param {
            if !skip.iter().any(|s| s == "self") {
                errors.spanned(
                    tokens,
                    "the receiver cannot be part of the key: add `skip(self)` to key the method by its other arguments",
                );
            }
        }
    }

    let client_key_name = client_key.map(name_of);
    let mut key_args = Vec::new();
    let mut payload_args = Vec::new();
    // `named` iterates in ascending order of names: the order the key format requires.
    for (name, var) in &named {
        if skip.contains(name) || client_key_name.as_ref() == Some(name) {
            continue;
        }
        if client_key.is_none() || scope.contains(name) {
            key_args.push(var.ident.clone());
        } else {
            payload_args.push(var.ident.clone());
        }
    }
    Plan {
        key_args,
        payload_args,
        client_key: client_key.cloned(),
    }
}

/// The last path segments of the response types of axum (and `http`'s `StatusCode`): an
/// `Ok` value of such a type would be stored and replayed, which a response cannot be.
const HTTP_RESPONSES: [&str; 7] = [
    "Json",
    "Response",
    "Html",
    "Redirect",
    "StatusCode",
    "Form",
    "Sse",
];

/// The `Ok` type of a `Result<T, E>` return (or of an alias whose name ends in `Result`,
/// such as `ApiResult<T>`), if it is an HTTP response or a tuple holding one.
///
/// The check is by name because the attribute sees tokens, not types: it cannot ask
/// whether `T` is axum's `Json`, only whether it is spelled `Json<..>` or `axum::Json<..>`.
/// A type of the user's own that shares such a name is refused too; an alias of it
/// (`type Reply = Response;`) passes, and a response the names miss still fails, later,
/// on `Stored`, whose note gives the same advice.
fn http_response_ok(ret: &Type) -> Option<&Type> {
    fn is_response(ty: &Type) -> bool {
        match ty {
            Type::Path(path) if path.qself.is_none() => path
                .path
                .segments
                .last()
                .is_some_and(|last| HTTP_RESPONSES.iter().any(|name| last.ident == name)),
            Type::Tuple(tuple) => tuple.elems.iter().any(is_response),
            Type::Paren(paren) => is_response(&paren.elem),
            Type::Group(group) => is_response(&group.elem),
            _ => false,
        }
    }
    let Type::Path(path) = ret else {
        return None;
    };
    let last = path.path.segments.last()?;
    if !last.ident.to_string().ends_with("Result") {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let ok = args.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })?;
    is_response(ok).then_some(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_responses_are_found_as_the_ok_type() {
        for ret in [
            "Result<Json<Order>, ApiError>",
            "Result<axum::Json<Order>, ApiError>",
            "Result<Response, ApiError>",
            "Result<axum::response::Response<Body>, ApiError>",
            "Result<(StatusCode, Json<Order>), ApiError>",
            "Result<(StatusCode, [(HeaderName, String); 1], Html<String>), ApiError>",
            "Result<Html<String>, ApiError>",
            "ApiResult<Redirect>",
            "std::result::Result<Form<Order>, ApiError>",
            "Result<Sse<Events>, ApiError>",
        ] {
            let ty: Type = syn::parse_str(ret).unwrap();
            assert!(http_response_ok(&ty).is_some(), "{ret}");
        }
        for ret in [
            "Result<Order, ApiError>",
            "Result<Created<Order>, ApiError>",
            "Result<Outcome<Order>, ApiError>",
            "Result<(u16, Order), ApiError>",
            "Result<Vec<Json<Order>>, ApiError>",
            "Result<Order, Json<ApiError>>",
            "Json<Order>",
            "Result<JsonValue, ApiError>",
        ] {
            let ty: Type = syn::parse_str(ret).unwrap();
            assert!(http_response_ok(&ty).is_none(), "{ret}");
        }
    }
}
