package orderflow

import "errors"

// ErrRejectedData marks a write the database refused because of the values it was given, not
// because of its own state: PostgreSQL's data exceptions (SQLSTATE class 22: invalid UTF-8, a
// NUL in text, a value too long, a number or date out of range), integrity violations (class
// 23) and a value too large for an index row (54000). Writing the same values again gets the
// same answer, so a consumer tries such a record a bounded number of times and then dead-letters
// it, with the database's message as the reason. Any other failure (the database away, a
// timeout, a deadlock) is not the data's fault and is retried with backoff for as long as it
// lasts. Adapters wrap the driver's error so that errors.Is(err, ErrRejectedData) holds.
var ErrRejectedData = errors.New("the database refused the data")
