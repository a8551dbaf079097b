//! A typed view of the annotated function: its parameters by name.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{FnArg, GenericParam, Ident, ItemFn, Pat};

/// One parameter of the function.
pub(crate) enum Param {
    /// `name: Type` (with or without `mut`).
    Named { ident: Ident, tokens: TokenStream },
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
