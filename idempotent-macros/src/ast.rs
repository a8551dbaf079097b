//! A typed view of the annotated function: its parameters by name.

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::{FnArg, GenericParam, Ident, ItemFn, Pat, Type, TypeParamBound};

/// One parameter of the function.
pub(crate) enum Param {
    /// `name: Type` (with or without `mut`).
    Named {
        ident: Ident,
        tokens: TokenStream,
        /// The type holds an `impl Trait`: a type the caller picks, unnamed here, whose
        /// name the key must carry since two types may serialize alike.
        impl_trait: bool,
    },
    /// `self`, `&self`, `&mut self`, `self: Arc<Self>`.
    Receiver { tokens: TokenStream },
    /// A destructuring pattern, or `_`: there is no name to key it by.
    Pattern { tokens: TokenStream },
}

impl Param {
    /// The name `skip(..)`, `key = ..` and `scope(..)` refer to it by.
    pub(crate) fn name(&self) -> Option<String> {
        match self {
            Param::Named { ident, .. } => Some(syn::ext::IdentExt::unraw(ident).to_string()),
            Param::Receiver { .. } => Some("self".to_owned()),
            Param::Pattern { .. } => None,
        }
    }
}

/// The function, and what the expansion needs to know of it.
pub(crate) struct Function {
    pub(crate) item: ItemFn,
    pub(crate) params: Vec<Param>,
}

impl Function {
    pub(crate) fn new(item: ItemFn) -> Self {
        let params = item
            .sig
            .inputs
            .iter()
            .map(|arg| match arg {
                FnArg::Receiver(receiver) => Param::Receiver {
                    tokens: receiver.to_token_stream(),
                },
                FnArg::Typed(typed) => match &*typed.pat {
                    Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                        Param::Named {
                            ident: pat.ident.clone(),
                            tokens: typed.to_token_stream(),
                            impl_trait: contains_impl_trait(&typed.ty),
                        }
                    }
                    _ => Param::Pattern {
                        tokens: typed.pat.to_token_stream(),
                    },
                },
            })
            .collect();
        Function { item, params }
    }

    /// Whether the named parameter's type holds an `impl Trait`.
    pub(crate) fn is_impl_trait(&self, name: &Ident) -> bool {
        self.params
            .iter()
            .any(|p| matches!(p, Param::Named { ident, impl_trait: true, .. } if ident == name))
    }

    pub(crate) fn has_receiver(&self) -> bool {
        self.params
            .iter()
            .any(|p| matches!(p, Param::Receiver { .. }))
    }

    /// The function's own type and const parameters (lifetimes play no part in keys).
    pub(crate) fn generic_params(&self) -> impl Iterator<Item = &GenericParam> {
        self.item
            .sig
            .generics
            .params
            .iter()
            .filter(|p| !matches!(p, GenericParam::Lifetime(_)))
    }
}

/// Whether `impl` appears anywhere in `ty` (`impl Serialize`, `&impl Serialize`,
/// `Vec<impl Serialize>`, `(u8, impl Serialize)`): `impl` is a keyword, so in a type it can
/// only start an `impl Trait`. Scanning the tokens catches every nesting without a visitor
/// per kind of type.
pub(crate) fn contains_impl_trait(ty: &Type) -> bool {
    fn scan(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|tree| match tree {
            TokenTree::Ident(ident) => ident == "impl",
            TokenTree::Group(group) => scan(group.stream()),
            TokenTree::Punct(_) | TokenTree::Literal(_) => false,
        })
    }
    scan(ty.to_token_stream())
}

/// Whether `ty` is `impl Future<..>`: an `async fn` written out by hand.
pub(crate) fn is_impl_future(ty: &Type) -> bool {
    let Type::ImplTrait(ty) = ty else {
        return false;
    };
    ty.bounds.iter().any(|bound| {
        matches!(bound, TypeParamBound::Trait(bound)
            if bound.path.segments.last().is_some_and(|s| s.ident == "Future"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impl_trait_is_found_at_any_depth() {
        for ty in [
            "impl Serialize",
            "&impl Serialize",
            "&mut (impl Serialize + Send)",
            "Vec<impl Serialize>",
            "(u8, Option<impl Serialize>)",
            "[impl Serialize; 2]",
        ] {
            assert!(contains_impl_trait(&syn::parse_str(ty).unwrap()), "{ty}");
        }
        for ty in ["u64", "&str", "Vec<T>", "Box<dyn Fn()>", "Implementation"] {
            assert!(!contains_impl_trait(&syn::parse_str(ty).unwrap()), "{ty}");
        }
    }

    #[test]
    fn impl_future_is_found_among_its_bounds() {
        for ty in [
            "impl Future<Output = Result<u64, E>>",
            "impl core::future::Future<Output = Result<u64, E>> + Send",
            "impl Send + Future<Output = Result<u64, E>>",
        ] {
            assert!(is_impl_future(&syn::parse_str(ty).unwrap()), "{ty}");
        }
        for ty in [
            "Result<impl Serialize, E>",
            "Future",
            "impl Iterator<Item = u8>",
        ] {
            assert!(!is_impl_future(&syn::parse_str(ty).unwrap()), "{ty}");
        }
    }
}
