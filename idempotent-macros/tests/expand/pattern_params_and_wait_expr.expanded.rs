async fn create_order(
    State(db): State<Db>,
    tenant: Tenant,
    key: IdempotencyKey,
    Json(order): Json<NewOrder>,
    Path((shop, ref aisle)): Path<(u32, String)>,
    Query(Filter { sort, limit: max, .. }): Query<Filter>,
    _: Extension<Tracing>,
) -> Result<Created<Order>, ApiError> {
    struct __IdempotentSite;
    static __IDEMPOTENT_OPTIONS: ::idempotency::__private::Options = ::idempotency::__private::Options {
        name: ::core::option::Option::None,
        ttl: ::idempotency::__private::Duration::from_nanos(86400000000000u64),
        wait: ::idempotency::__private::Options::DEFAULT_WAIT,
        lease: ::core::option::Option::None,
        client_key: true,
        key_params: &["tenant"],
        payload_params: &["aisle", "max", "order", "shop", "sort"],
    };
    static __IDEMPOTENT_NAMESPACE: ::idempotency::__private::NamespaceCache = ::idempotency::__private::NamespaceCache::new();
    let __idempotent_store = ::idempotency::__private::default_store();
    let __idempotent_local = {
        #[allow(unused_imports)]
        use ::idempotency::__private::{ByMemory as _, ByStore as _};
        (&&::idempotency::__private::StoreProbe(__idempotent_store)).local()
    };
    let __idempotent_wait = ::idempotency::__private::wait(settings::wait());
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
            &key,
        );
        ::idempotency::__private::Derivation::payload_arg(
            &mut __idempotent_derivation,
            "aisle",
            &aisle,
        );
        ::idempotency::__private::Derivation::payload_arg(
            &mut __idempotent_derivation,
            "max",
            &max,
        );
        ::idempotency::__private::Derivation::payload_arg(
            &mut __idempotent_derivation,
            "order",
            &order,
        );
        ::idempotency::__private::Derivation::payload_arg(
            &mut __idempotent_derivation,
            "shop",
            &shop,
        );
        ::idempotency::__private::Derivation::payload_arg(
            &mut __idempotent_derivation,
            "sort",
            &sort,
        );
        ::idempotency::__private::Derivation::finish(&mut __idempotent_derivation)
    };
    let __idempotent_replayer = {
        #[allow(unused_imports)]
        use ::idempotency::__private::{ReplayByClone as _, ReplayByDecode as _};
        (&&::idempotency::__private::ReplayProbe::<
            Result<Created<Order>, ApiError>,
        >::new())
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
            return ::core::convert::identity::<
                Result<Created<Order>, ApiError>,
            >(loop {});
        }
        {
            let _ = ("the user's block", db, order, shop, aisle, sort, max);
            Ok(Created(Order { id: 1 }))
        }
    };
    ::idempotency::__private::execute(
            __idempotent_store,
            __idempotent_local,
            &__IDEMPOTENT_OPTIONS,
            ::core::option::Option::Some(__idempotent_wait),
            __idempotent_derived,
            __idempotent_replayer,
            __idempotent_body,
        )
        .await
}
