// `?` and `return` in the body behave as in the function without the attribute.
use idempotency::idempotent;

#[derive(Debug)]
#[allow(dead_code)]
enum AppError {
    Idempotency(idempotency::Error),
    Parse(std::num::ParseIntError),
}

impl From<idempotency::Error> for AppError {
    fn from(err: idempotency::Error) -> Self {
        AppError::Idempotency(err)
    }
}

impl From<std::num::ParseIntError> for AppError {
    fn from(err: std::num::ParseIntError) -> Self {
        AppError::Parse(err)
    }
}

#[idempotent]
async fn parse(text: String) -> Result<u64, AppError> {
    if text.is_empty() {
        return Ok(0);
    }
    let value: u64 = text.parse()?;
    if value > 100 {
        return Err(AppError::Parse("x".parse::<u64>().unwrap_err()));
    }
    Ok(value)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(parse(String::new()).await.unwrap(), 0);
    assert_eq!(parse("7".to_owned()).await.unwrap(), 7);
    assert!(matches!(
        parse("x".to_owned()).await,
        Err(AppError::Parse(_))
    ));
    assert!(parse("101".to_owned()).await.is_err());
}
