// Generic functions: each instantiation keys its own records.
use idempotency::idempotent;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

#[idempotent]
async fn echo<T>(value: T) -> Result<T, AppError>
where
    T: Serialize + DeserializeOwned + Send,
{
    Ok(value)
}

#[idempotent]
async fn first<'a, T: Serialize + Clone + DeserializeOwned>(
    values: &'a [T],
) -> Result<Option<T>, AppError> {
    Ok(values.first().cloned())
}

#[idempotent]
async fn repeat<const N: usize>(value: u8) -> Result<Vec<u8>, AppError> {
    Ok(vec![value; N])
}

#[idempotent]
async fn convert<E: From<idempotency::Error>>(value: u64) -> Result<u64, E> {
    Ok(value)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(echo(3_u8).await.unwrap(), 3);
    assert_eq!(echo("a".to_owned()).await.unwrap(), "a");
    assert_eq!(first(&[1_u32, 2]).await.unwrap(), Some(1));
    assert_eq!(repeat::<3>(1).await.unwrap(), [1, 1, 1]);
    assert_eq!(convert::<AppError>(4).await.unwrap(), 4);
}
