async fn charge(customer: u64) -> Result<u64, AppError> {
    struct __IdempotentSite;
    static __IDEMPOTENT_OPTIONS: ::my_sdk::idem::__private::Options = ::my_sdk::idem::__private::Options {
        name: ::core::option::Option::None,
        ttl: ::my_sdk::idem::__private::Options::DEFAULT_TTL,
        wait: ::my_sdk::idem::__private::Options::DEFAULT_WAIT,
        lease: ::core::option::Option::None,
        client_key: false,
        key_params: &["customer"],
        payload_params: &[],
    };
    static __IDEMPOTENT_NAMESPACE: ::my_sdk::idem::__private::NamespaceCache = ::my_sdk::idem::__private::NamespaceCache::new();
    let __idempotent_store = ::my_sdk::idem::__private::default_store();
    let __idempotent_local = {
        #[allow(unused_imports)]
        use ::my_sdk::idem::__private::{ByMemory as _, ByStore as _};
        (&&::my_sdk::idem::__private::StoreProbe(__idempotent_store)).local()
    };
    let __idempotent_derived = {
        let mut __idempotent_derivation = ::my_sdk::idem::__private::Derivation::new(
            &__IDEMPOTENT_OPTIONS,
            &__IDEMPOTENT_NAMESPACE,
            ::my_sdk::idem::__private::type_name::<__IdempotentSite>(),
            __idempotent_local,
        );
        ::my_sdk::idem::__private::Derivation::key_arg(
            &mut __idempotent_derivation,
            "customer",
            &customer,
        );
        ::my_sdk::idem::__private::Derivation::finish(&mut __idempotent_derivation)
    };
    let __idempotent_replayer = {
        #[allow(unused_imports)]
        use ::my_sdk::idem::__private::{ReplayByClone as _, ReplayByDecode as _};
        (&&::my_sdk::idem::__private::ReplayProbe::<Result<u64, AppError>>::new())
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
            return ::core::convert::identity::<Result<u64, AppError>>(loop {});
        }
        {
            let _ = "the user's block";
            Ok(customer)
        }
    };
    ::my_sdk::idem::__private::execute(
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
