package kafka

import (
	"context"
	"net"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"orderflow/internal/netdial"
)

// DialFunc opens a connection to a broker. Nil means netdial.DialContext: TCP keepalive and a
// TCP user timeout, so a silent broker fails the connection in seconds. Tests pass a proxy's
// Dial to route every connection, including those to the addresses brokers advertise, through
// a path they can break.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// RequestTimeout bounds one request of the clients made here. A broker that stops answering
// without closing the connection fails the request after it, instead of holding the caller
// until the kernel gives up on the connection.
const RequestTimeout = 10 * time.Second

func (d DialFunc) orDefault() DialFunc {
	if d == nil {
		return netdial.DialContext
	}
	return d
}

// NewTransport is the transport of a kafkago.Client or kafkago.Writer.
func NewTransport(clientID string, dial DialFunc) *kafkago.Transport {
	return &kafkago.Transport{
		ClientID:    clientID,
		Dial:        dial.orDefault(),
		DialTimeout: netdial.ConnectTimeout,
		// kafka-go routes requests by cached metadata and refreshes it only this often (at a
		// random point within it), not on a NOT_LEADER error: short, so a leader change costs
		// seconds.
		MetadataTTL: 3 * time.Second,
	}
}

// NewClient is a client of the cluster at brokers whose requests time out after timeout
// (RequestTimeout when 0).
func NewClient(brokers []string, clientID string, dial DialFunc, timeout time.Duration) *kafkago.Client {
	if timeout <= 0 {
		timeout = RequestTimeout
	}
	return &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: timeout, Transport: NewTransport(clientID, dial)}
}

// NewDialer is the dialer of a kafkago.Reader (ReaderConfig.Dialer). The reader bounds its own
// requests: fetches by ReadBatchTimeout (10 s by default), group requests by the group's
// timeouts.
func NewDialer(clientID string, dial DialFunc) *kafkago.Dialer {
	return &kafkago.Dialer{ClientID: clientID, DialFunc: dial.orDefault(), Timeout: netdial.ConnectTimeout}
}
