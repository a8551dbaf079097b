pub async fn charge(
    request_id: String,
    tenant: u64,
    db: Connection,
    cents: u64,
) -> Result<Receipt, AppError> {
    struct __IdempotentSite;
    static __IDEMPOTENT_OPTIONS: ::idempotency::__private::Options = ::idempotency::__private::Options {
        name: ::core::option::Option::Some("payments.charge"),
        ttl: ::idempotency::__private::Duration::from_nanos(3600000000000u64),
        wait: ::idempotency::__private::Options::DEFAULT_WAIT,
        lease: ::core::option::Option::None,
        client_key: true,
        key_params: &["tenant"],
        payload_params: &["cents"],
    };
    static __IDEMPOTENT_NAMESPACE: ::idempotency::__private::NamespaceCache = ::idempotency::__private::NamespaceCache::new();
    let __idempotent_store = ::idempotency::__private::default_store();
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
        ::idempotency::__private::Derivation::key_arg(
            &mut __idempotent_derivation,
            "tenant",
            &tenant,
        );
        ::idempotency::__private::Derivation::client_key(
            &mut __idempotent_derivation,
            &request_id,
        );
        ::idempotency::__private::Derivation::payload_arg(
            &mut __idempotent_derivation,
            "cents",
            &cents,
        );
        ::idempotency::__private::Derivation::finish(&mut __idempotent_derivation)
    };
    let __idempotent_replayer = {
        #[allow(unused_imports)]
        use ::idempotency::__private::{ReplayByClone as _, ReplayByDecode as _};
        (&&::idempotency::__private::ReplayProbe::<Result<Receipt, AppError>>::new())
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
            return ::core::convert::identity::<Result<Receipt, AppError>>(loop {});
        }
        {
            let _ = ("the user's block", db);
            Ok(Receipt { cents })
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
