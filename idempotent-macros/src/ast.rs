//! A typed view of the annotated function: the variables its parameters bind, by name.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{FnArg, GenericParam, Ident, ItemFn, Pat, Type, TypeParamBound};

/// A variable bound by a parameter: `name` of `name: Type`, or `db` of `State(db): State<Db>`.
/// The key names an argument by it, whichever pattern bound it.
pub(crate) struct Var {
    pub(crate) ident: Ident,
    /// Where an error about the variable's value goes: the whole `name: Type` of a plain
    /// parameter, the variable's own token inside a pattern.
    pub(crate) span: Span,
    /// The parameter's type holds an `impl Trait`: a type the caller picks, unnamed here,
    /// whose name the key must carry since two types may serialize alike.
    pub(crate) impl_trait: bool,
}

impl Var {
    /// The name `skip(..)`, `key = ..` and `scope(..)` refer to it by: `r#type` is `type`.
    pub(crate) fn name(&self) -> String {
        syn::ext::IdentExt::unraw(&self.ident).to_string()
    }
}

/// One parameter of the function.
pub(crate) enum Param {
    /// `name: Type`, `mut name: Type`, or a pattern (`State(db): State<Db>`, `(a, b): (u8, u8)`,
    /// `_: T`): the variables it binds, none for `_`.
    Typed { vars: Vec<Var> },
    /// `self`, `&self`, `&mut self`, `self: Arc<Self>`.
    Receiver { tokens: TokenStream },
    /// A pattern whose variables cannot be seen: a macro.
    Opaque { tokens: TokenStream },
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
                FnArg::Typed(typed) => {
                    let impl_trait = contains_impl_trait(&typed.ty);
                    match &*typed.pat {
                        Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                            Param::Typed {
                                vars: vec![Var {
                                    ident: pat.ident.clone(),
                                    span: typed.span(),
                                    impl_trait,
                                }],
                            }
                        }
                        pat => {
                            let mut idents = Vec::new();
                            match bindings(pat, &mut idents) {
                                Ok(()) => Param::Typed {
                                    vars: idents
                                        .into_iter()
                                        .map(|ident| Var {
                                            span: ident.span(),
                                            ident,
                                            impl_trait,
                                        })
                                        .collect(),
                                },
                                Err(opaque) => Param::Opaque {
                                    tokens: opaque.to_token_stream(),
                                },
                            }
                        }
                    }
                }
            })
            .collect();
        Function { item, params }
    }

    /// Every variable the parameters bind, the receiver aside.
    pub(crate) fn vars(&self) -> impl Iterator<Item = &Var> {
        self.params.iter().flat_map(|param| match param {
            Param::Typed { vars } => vars.as_slice(),
            Param::Receiver { .. } | Param::Opaque { .. } => &[],
        })
    }

    /// The variable `ident` names.
    pub(crate) fn var(&self, ident: &Ident) -> Option<&Var> {
        let name = syn::ext::IdentExt::unraw(ident).to_string();
        self.vars().find(|var| var.name() == name)
    }

    /// Whether a parameter is a pattern, so that an unknown name may be one of its fields.
    pub(crate) fn has_pattern(&self) -> bool {
        self.item.sig.inputs.iter().any(|arg| {
            matches!(arg, FnArg::Typed(typed)
                if !matches!(&*typed.pat, Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none()))
        })
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

/// Collects the variables `pat` binds, in order, into `out`: `x`, `mut x`, `ref x` and
/// `x @ ..` bind `x` (and what the sub-pattern binds); `_`, `..`, paths and literals bind
/// nothing. A macro hides its bindings: it is returned as the error.
fn bindings<'p>(pat: &'p Pat, out: &mut Vec<Ident>) -> Result<(), &'p Pat> {
    match pat {
        Pat::Ident(pat) => {
            out.push(pat.ident.clone());
            match &pat.subpat {
                Some((_, subpat)) => bindings(subpat, out),
                None => Ok(()),
            }
        }
        // Every case of an or-pattern binds the same variables.
        Pat::Or(pat) => pat.cases.first().map_or(Ok(()), |case| bindings(case, out)),
        Pat::Paren(pat) => bindings(&pat.pat, out),
        Pat::Reference(pat) => bindings(&pat.pat, out),
        Pat::Type(pat) => bindings(&pat.pat, out),
        Pat::Slice(pat) => pat.elems.iter().try_for_each(|elem| bindings(elem, out)),
        Pat::Tuple(pat) => pat.elems.iter().try_for_each(|elem| bindings(elem, out)),
        Pat::TupleStruct(pat) => pat.elems.iter().try_for_each(|elem| bindings(elem, out)),
        Pat::Struct(pat) => pat
            .fields
            .iter()
            .try_for_each(|field| bindings(&field.pat, out)),
        Pat::Const(_)
        | Pat::Lit(_)
        | Pat::Path(_)
        | Pat::Range(_)
        | Pat::Rest(_)
        | Pat::Wild(_) => Ok(()),
        _ => Err(pat),
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

    fn names(param: &str) -> Vec<String> {
        let item: ItemFn = syn::parse_str(&format!("async fn f({param}) {{}}")).unwrap();
        Function::new(item).vars().map(Var::name).collect()
    }

    #[test]
    fn patterns_are_keyed_by_the_variables_they_bind() {
        for (param, vars) in [
            ("customer: u64", &["customer"][..]),
            ("mut qty: u32", &["qty"]),
            ("r#type: &str", &["type"]),
            ("State(db): State<Db>", &["db"]),
            ("Json(order): Json<NewOrder>", &["order"]),
            ("Path((a, b)): Path<(u32, u32)>", &["a", "b"]),
            ("Foo { x, y: renamed, .. }: Foo", &["x", "renamed"]),
            ("(a, mut b, _): (u8, u8, u8)", &["a", "b"]),
            ("&(a, ref b): &(u8, String)", &["a", "b"]),
            ("[first, .., last]: [u8; 4]", &["first", "last"]),
            ("whole @ Pair(left, _): Pair", &["whole", "left"]),
            ("ref x: u8", &["x"]),
            ("(A(x) | B(x)): Either", &["x"]),
            ("_: Tracing", &[]),
            ("Unit: Unit", &["Unit"]),
        ] {
            assert_eq!(names(param), vars, "{param}");
        }
    }

    #[test]
    fn a_macro_pattern_hides_its_bindings() {
        let item: ItemFn = syn::parse_str("async fn f(m!(x): u8) {}").unwrap();
        assert!(matches!(
            Function::new(item).params[0],
            Param::Opaque { .. }
        ));
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
