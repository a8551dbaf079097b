async fn apply<'a, T: Serialize + Send, const N: usize>(
    &'a self,
    item: T,
    tag: impl Serialize + Send,
) -> Result<[u8; N], AppError>
where
    T: Sync,
{
    struct __IdempotentSite;
    static __IDEMPOTENT_OPTIONS: ::idempotency::__private::Options = ::idempotency::__private::Options {
        name: ::core::option::Option::None,
        ttl: ::idempotency::__private::Options::DEFAULT_TTL,
        wait: ::idempotency::__private::Options::DEFAULT_WAIT,
        lease: ::core::option::Option::None,
        client_key: false,
        key_params: &["const N", "item", "tag"],
        payload_params: &[],
    };
    static __IDEMPOTENT_NAMESPACE: ::idempotency::__private::NamespaceCache = ::idempotency::__private::NamespaceCache::new();
    let __idempotent_store = &(self.store);
    let __idempotent_local = {
        #[allow(unused_imports)]
        use ::idempotency::__private::{ByMemory as _, ByStore as _};
        (&&::idempotency::__private::StoreProbe(__idempotent_store)).local()
    };
    let __idempotent_derived = {
        let mut __idempotent_derivation = ::idempotency::__private::Derivation::new(
            &__IDEMPOTENT_OPTIONS,
            &__IDEMPOTENT_NAMESPACE,
            ::idempotency::__private::type_name::<__IdempotentSite>(),
            __idempotent_local,
        );
        __idempotent_derivation.generic(::idempotency::__private::type_name::<T>());
        __idempotent_derivation.key_arg("const N", &N);
        __idempotent_derivation.generic(::idempotency::__private::type_name::<Self>());
        ::idempotency::__private::Derivation::key_arg(
            &mut __idempotent_derivation,
            "item",
            &item,
        );
        ::idempotency::__private::Derivation::key_arg_type(
            &mut __idempotent_derivation,
            "tag",
            ::idempotency::__private::type_name_of_val(&tag),
        );
        ::idempotency::__private::Derivation::key_arg(
            &mut __idempotent_derivation,
            "tag",
            &tag,
        );
        ::idempotency::__private::Derivation::finish(&mut __idempotent_derivation)
    };
    let __idempotent_replayer = {
        #[allow(unused_imports)]
        use ::idempotency::__private::{ReplayByClone as _, ReplayByDecode as _};
        (&&::idempotency::__private::ReplayProbe::<Result<[u8; N], AppError>>::new())
            .replayer()
    };
    if let ::core::option::Option::Some(__idempotent_replay) = __idempotent_replayer
        .replay_kept(__idempotent_local, &__idempotent_derived)
    {
        return __idempotent_replay;
    }
    let __idempotent_body = async move {
        #[allow(
            unknown_lints,
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::needless_return,
            clippy::unreachable
        )]
        if false {
            return ::core::convert::identity::<Result<[u8; N], AppError>>(loop {});
        }
        {
            let _ = ("the user's block", item, tag);
            Ok([0; N])
        }
    };
    ::idempotency::__private::execute(
            __idempotent_store,
            __idempotent_local,
            &__IDEMPOTENT_OPTIONS,
            ::core::option::Option::None,
            __idempotent_derived,
            __idempotent_replayer,
            __idempotent_body,
        )
        .await
}
