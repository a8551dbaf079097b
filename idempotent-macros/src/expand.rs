//! Code generation: the function keeps its signature; its body becomes a call of the
//! runtime's `execute` with the key material and the original body as a future.

use crate::ast::Function;
use crate::attr::{Attr, Wait};
use crate::valid::{self, Plan};
use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{GenericParam, Ident, ItemFn, ReturnType};

/// The attribute's entry point, on `proc_macro2` tokens so that it can be unit-tested.
pub(crate) fn idempotent(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: ItemFn = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(err) => {
            let mut out = syn::Error::new(err.span(), "`#[idempotent]` applies to an `async fn`")
                .into_compile_error();
            out.extend(item);
            return out;
        }
    };
    let mut attr = Attr::new(args);
    let function = Function::new(item);
    let mut errors = std::mem::take(&mut attr.errors);
    let plan = valid::check(&attr, &function, &mut errors);
    if !errors.is_empty() {
        return with_errors(&function.item, errors.to_compile_errors());
    }
    expand(&attr, &function, &plan)
}

/// The original function, untouched, next to the errors: the IDE keeps working and no
/// "function not found" errors pile up on top of the real ones.
fn with_errors(item: &ItemFn, errors: TokenStream) -> TokenStream {
    let mut out = errors;
    out.extend(item.to_token_stream());
    out
}

fn duration(value: Option<&std::time::Duration>, private: &TokenStream) -> Option<TokenStream> {
    value.map(|d| {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        quote!(#private::Duration::from_nanos(#nanos))
    })
}

/// The crate path spanned on `span`, as if written in a `quote_spanned!`, so that an error
/// on the call lands on the user's tokens alone. A `$crate` keeps its span: that span
/// says which crate it means.
fn respanned(path: &TokenStream, span: Span) -> TokenStream {
    path.clone()
        .into_iter()
        .map(|mut tree| {
            if !matches!(&tree, TokenTree::Ident(ident) if ident == "$crate") {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

fn expand(attr: &Attr, function: &Function, plan: &Plan) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = &function.item;
    let private = match &attr.krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::idempotency::__private),
    };
    // Hygiene keeps the user's variables apart, but a `let` pattern still resolves unit
    // structs and consts of the user's crate by name: hence the unlikely name.
    let derivation = Ident::new("__idempotent_derivation", Span::mixed_site());

    let name = match &attr.name {
        Some(name) => quote!(::core::option::Option::Some(#name)),
        None => quote!(::core::option::Option::None),
    };
    let ttl = duration(attr.ttl.as_ref(), &private)
        .unwrap_or_else(|| quote!(#private::Options::DEFAULT_TTL));
    let (wait, call_wait) = match &attr.wait {
        Some(Wait::Literal(wait)) => (duration(Some(wait), &private), None),
        Some(Wait::Expr(expr)) => (None, Some(expr)),
        None => (None, None),
    };
    let wait = wait.unwrap_or_else(|| quote!(#private::Options::DEFAULT_WAIT));
    let lease = match duration(attr.lease.as_ref(), &private) {
        Some(lease) => quote!(::core::option::Option::Some(#lease)),
        None => quote!(::core::option::Option::None),
    };
    let client_key = plan.client_key.is_some();

    // Each instantiation of a generic function keys its own records.
    let mut generics = Vec::new();
    // The labels of the key's parts, in the order they are added.
    let mut key_params = Vec::new();
    for param in function.generic_params() {
        match param {
            GenericParam::Type(ty) => {
                let ident = &ty.ident;
                generics.push(quote!(#derivation.generic(#private::type_name::<#ident>());));
            }
            GenericParam::Const(konst) => {
                let ident = &konst.ident;
                let label = format!("const {}", ident.unraw());
                generics.push(quote!(#derivation.key_arg(#label, &#ident);));
                key_params.push(label);
            }
            GenericParam::Lifetime(_) => {}
        }
    }
    if attr.name.is_none() && function.has_receiver() {
        // The path of a method names its type, but not the type's generic arguments.
        generics.push(quote!(#derivation.generic(#private::type_name::<Self>());));
    }

    // Each call is spanned on its parameter, path included, so that a missing `Serialize`
    // is reported under the parameter alone. The argument is the parameter's own ident, not
    // the one written in the attribute, or the error would stretch from one to the other.
    // A variable a pattern binds is spanned on its own token.
    let param_of = |ident: &Ident| {
        function.var(ident).map_or_else(
            || (ident.clone(), ident.span()),
            |var| (var.ident.clone(), var.span),
        )
    };
    key_params.extend(plan.key_args.iter().map(|ident| ident.unraw().to_string()));
    let payload_params: Vec<String> = plan
        .payload_args
        .iter()
        .map(|ident| ident.unraw().to_string())
        .collect();
    // An `impl Trait` argument's type is the caller's choice and two types may serialize
    // alike, so its concrete name goes in first, wherever the argument itself goes.
    let arg_type = |ident: &Ident, label: &str, method: &str| {
        if !function.var(ident).is_some_and(|var| var.impl_trait) {
            return TokenStream::new();
        }
        let (ident, span) = param_of(ident);
        let method = Ident::new(method, span);
        let private = respanned(&private, span);
        quote_spanned!(span=> #private::Derivation::#method(
            &mut #derivation,
            #label,
            #private::type_name_of_val(&#ident),
        );)
    };
    let key_args = plan.key_args.iter().map(|ident| {
        let label = ident.unraw().to_string();
        let typed = arg_type(ident, &label, "key_arg_type");
        let (ident, span) = param_of(ident);
        let private = respanned(&private, span);
        quote_spanned!(span=> #typed #private::Derivation::key_arg(&mut #derivation, #label, &#ident);)
    });
    let payload_args = plan.payload_args.iter().map(|ident| {
        let label = ident.unraw().to_string();
        let typed = arg_type(ident, &label, "payload_arg_type");
        let (ident, span) = param_of(ident);
        let private = respanned(&private, span);
        quote_spanned!(span=> #typed #private::Derivation::payload_arg(&mut #derivation, #label, &#ident);)
    });
    let client_key_arg = plan.client_key.iter().map(|ident| {
        let (ident, span) = param_of(ident);
        let private = respanned(&private, span);
        quote_spanned!(span=> #private::Derivation::client_key(&mut #derivation, &#ident);)
    });

    // The first token of the return type: every token of the call below carries it, so
    // that a return type the runtime cannot handle is reported there, once.
    let ret_span = match &sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => Span::call_site(),
    };
    // Hygienic locals, located on the return type too: they are arguments of that call.
    let local = |name: &str| Ident::new(name, Span::mixed_site().located_at(ret_span));
    let store_binding = local("__idempotent_store");
    let local_store = local("__idempotent_local");
    let derived = local("__idempotent_derived");
    // `wait = <expr>`: evaluated on each call, before the key, and spanned on the
    // expression so that a value of another type is reported there.
    let wait_binding = local("__idempotent_wait");
    let (call_wait, call_wait_arg) = match call_wait {
        Some(expr) => {
            let span = expr.span();
            let private = respanned(&private, span);
            (
                quote_spanned!(span=> let #wait_binding = #private::wait(#expr);),
                quote!(::core::option::Option::Some(#wait_binding)),
            )
        }
        None => (TokenStream::new(), quote!(::core::option::Option::None)),
    };
    let store = match &attr.store {
        Some(expr) => quote_spanned!(expr.span()=> &(#expr)),
        None => quote!(#private::default_store()),
    };

    let ret = match &sig.output {
        ReturnType::Type(_, ty) => ty.to_token_stream(),
        ReturnType::Default => quote!(()),
    };
    // Fixes the async block's output to the declared return type, so that `?` and
    // inference inside the body behave as in the original function. No `let`: a binding
    // would clash with a unit struct of the same name in the user's crate.
    let anchor = quote! {
        #[allow(
            unknown_lints,
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::needless_return,
            clippy::unreachable
        )]
        if false {
            return ::core::convert::identity::<#ret>(loop {});
        }
    };
    // No turbofish: the result type is inferred from the function's return type, so that
    // no second copy of the same error points at the type itself.
    let body = local("__idempotent_body");
    let ret_private = respanned(&private, ret_span);
    let probe = quote_spanned! {ret_span=>
        {
            // One of the two is used, whichever fits the type.
            #[allow(unused_imports)]
            use #ret_private::{ReplayByClone as _, ReplayByDecode as _};
            (&&#ret_private::ReplayProbe::<#ret>::new()).replayer()
        }
    };
    let replay = local("__idempotent_replay");
    let replayer = local("__idempotent_replayer");
    // A replay of a value this process keeps decoded, before the call's future is built.
    let fast_path = quote_spanned! {ret_span=>
        let #replayer = #probe;
        if let ::core::option::Option::Some(#replay) =
            #replayer.replay_kept(#local_store, &#derived)
        {
            return #replay;
        }
    };
    let execute = quote_spanned! {ret_span=>
        #ret_private::execute(
            #store_binding,
            #local_store,
            &__IDEMPOTENT_OPTIONS,
            #call_wait_arg,
            #derived,
            #replayer,
            #body,
        )
        .await
    };

    quote! {
        #(#attrs)*
        #vis #sig {
            struct __IdempotentSite;
            static __IDEMPOTENT_OPTIONS: #private::Options = #private::Options {
                name: #name,
                ttl: #ttl,
                wait: #wait,
                lease: #lease,
                client_key: #client_key,
                key_params: &[#(#key_params),*],
                payload_params: &[#(#payload_params),*],
            };
            static __IDEMPOTENT_NAMESPACE: #private::NamespaceCache = #private::NamespaceCache::new();
            let #store_binding = #store;
            // The memory store of the fast path, if the store's type has one.
            let #local_store = {
                #[allow(unused_imports)]
                use #private::{ByMemory as _, ByStore as _};
                (&&#private::StoreProbe(#store_binding)).local()
            };
            #call_wait
            // In a block of its own: the hashers' buffers stay on the stack, out of the future.
            let #derived = {
                let mut #derivation = #private::Derivation::new(
                    &__IDEMPOTENT_OPTIONS,
                    &__IDEMPOTENT_NAMESPACE,
                    #private::type_name::<__IdempotentSite>(),
                    #local_store,
                );
                #(#generics)*
                #(#key_args)*
                #(#client_key_arg)*
                #(#payload_args)*
                #private::Derivation::finish(&mut #derivation)
            };
            #fast_path
            let #body = async move {
                #anchor
                #block
            };
            #execute
        }
    }
}

#[cfg(test)]
mod tests;
