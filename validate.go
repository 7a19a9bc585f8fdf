package orderflow

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidateID checks a client-supplied identifier (customer id, SKU): 1 to 64 printable
// characters without spaces.
func ValidateID(s string) string {
	if p := textProblem(s); p != "" {
		return p
	}
	switch {
	case s == "":
		return "must not be empty"
	case utf8.RuneCountInString(s) > MaxIDLength:
		return fmt.Sprintf("must be at most %d characters", MaxIDLength)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return "must contain only printable characters and no spaces"
		}
	}
	return ""
}

// ValidateText checks client-supplied free text (a cancel reason) that is stored in
// PostgreSQL: at most maxRunes characters, valid UTF-8, no NUL. Unlike StorableText it
// refuses instead of repairing, because the client's text must round-trip exactly.
func ValidateText(s string, maxRunes int) string {
	if p := textProblem(s); p != "" {
		return p
	}
	if utf8.RuneCountInString(s) > maxRunes {
		return fmt.Sprintf("must be at most %d characters", maxRunes)
	}
	return ""
}

// textProblem names what PostgreSQL would refuse in a text column: invalid UTF-8
// (SQLSTATE 22021) and NUL, which no text value may hold. Refusing them here gives the
// client a field problem instead of a 500 from the failed write.
func textProblem(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case strings.IndexByte(s, 0) >= 0:
		return "must not contain NUL characters"
	}
	return ""
}

// Validate lists every problem with a new order, so a client can fix them all at once.
// Quantity and price ranges are checked by the decoder before the values become int64.
func (n NewOrder) Validate() []FieldProblem {
	var ps []FieldProblem
	add := func(ptr, detail string) { ps = append(ps, FieldProblem{Pointer: ptr, Detail: detail}) }
	if p := ValidateID(n.CustomerID); p != "" {
		add("/customer_id", p)
	}
	if !IsCurrency(n.Currency) {
		add("/currency", "must be an active ISO 4217 currency code such as EUR or USD")
	}
	if n.CustomerTier != "" && !IsCustomerTier(n.CustomerTier) {
		add("/customer_tier", "must be one of "+strings.Join(CustomerTiers, ", "))
	}
	switch {
	case len(n.Items) == 0:
		add("/items", "must hold at least one item")
	case len(n.Items) > MaxItems:
		add("/items", fmt.Sprintf("must hold at most %d items", MaxItems))
	}
	for i, it := range n.Items {
		if i >= MaxItems {
			break
		}
		if p := ValidateID(it.SKU); p != "" {
			add(fmt.Sprintf("/items/%d/sku", i), p)
		}
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			add(fmt.Sprintf("/items/%d/quantity", i), fmt.Sprintf("must be an integer from 1 to %d", MaxQuantity))
		}
		if it.UnitPriceCents < 0 || it.UnitPriceCents > MaxUnitPriceCents {
			add(fmt.Sprintf("/items/%d/unit_price_cents", i), fmt.Sprintf("must be an integer from 0 to %d", MaxUnitPriceCents))
		}
	}
	if len(ps) == 0 {
		for sku, q := range n.Quantities() {
			if q > MaxQuantity {
				add("/items", fmt.Sprintf("SKU %q totals %d units; at most %d per order", sku, q, MaxQuantity))
			}
		}
	}
	return ps
}

// IsCustomerTier reports whether tier is one the API accepts.
func IsCustomerTier(tier string) bool {
	for _, t := range CustomerTiers {
		if tier == t {
			return true
		}
	}
	return false
}

// IsCurrency reports whether code is an active ISO 4217 alphabetic code.
func IsCurrency(code string) bool {
	_, ok := currencies[code]
	return ok
}

// currencies is ISO 4217's list of active codes (funds and precious metals left out).
var currencies = func() map[string]struct{} {
	const codes = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL " +
		"BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN " +
		"ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR " +
		"ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL " +
		"MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN " +
		"PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP " +
		"STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV " +
		"WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG"
	m := map[string]struct{}{}
	for i := 0; i+3 <= len(codes); i += 4 {
		m[codes[i:i+3]] = struct{}{}
	}
	return m
}()
