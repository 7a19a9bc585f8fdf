package webhook

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary webhook headers and bodies to the receiver's check: it must
// never panic, must accept only a signature made with the secret over exactly this id,
// timestamp and body, and must accept what Sign makes.
func FuzzVerify(f *testing.F) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	now := time.Unix(1_700_000_000, 0)
	good, _ := Sign(secret, "msg_1", now, []byte(`{"a":1}`))
	f.Add("msg_1", "1700000000", good, []byte(`{"a":1}`))
	f.Add("msg_1", "1700000000", "v1,"+strings.Repeat("A", 44), []byte(`{"a":1}`))
	f.Add("msg_1", "-9223372036854775808", good, []byte(`{}`))
	f.Add("msg_1", "99999999999999999999", good, []byte(`{}`))
	f.Add("", "", "", []byte(nil))
	f.Add("id\x00", "1700000000", "v1 v1, v2,x "+good, []byte("\xff"))
	f.Fuzz(func(t *testing.T, id, timestamp, signatures string, body []byte) {
		err := Verify([]string{secret, "whsec_not-base64!"}, id, timestamp, signatures, body, now, 5*time.Minute)
		if err == nil {
			ts, perr := strconv.ParseInt(timestamp, 10, 64)
			if perr != nil {
				t.Fatalf("accepted an unparseable timestamp %q", timestamp)
			}
			want, _ := Sign(secret, id, time.Unix(ts, 0), body)
			found := false
			for _, s := range strings.Fields(signatures) {
				found = found || s == want
			}
			if !found {
				t.Fatalf("accepted signatures %q, none of which is %q", signatures, want)
			}
		}
		if id == "" {
			return
		}
		sig, err := SignatureHeader([]string{secret}, id, now, body)
		if err != nil {
			t.Fatalf("signing: %v", err)
		}
		if err := Verify([]string{secret}, id, strconv.FormatInt(now.Unix(), 10), sig, body, now, time.Minute); err != nil {
			t.Fatalf("refused its own signature: %v", err)
		}
		if err := Verify([]string{secret}, id, strconv.FormatInt(now.Unix(), 10), sig, append(append([]byte{}, body...), 'x'), now, time.Minute); err == nil {
			t.Fatal("accepted a signature over another body")
		}
	})
}
