package notify

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Formats of a destination's body.
const (
	FormatJSON  = "json"  // Body
	FormatSlack = "slack" // a Slack incoming webhook's message
)

// Headers of every delivery.
const (
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256 of the body with
	// the destination's secret; absent when it has none.
	HeaderSignature = "Slipway-Signature"
	// HeaderDelivery is the delivery's id, the same at every attempt.
	HeaderDelivery = "Slipway-Delivery"
	// HeaderEvent is the event's kind.
	HeaderEvent = "Slipway-Event"
	// HeaderAttempt is the attempt's number, from 1.
	HeaderAttempt = "Slipway-Attempt"
)

// Body is the json format's body: the event and the delivery's id.
type Body struct {
	ID string `json:"id"`
	Event
	// Summary is the event's line for people (Event.Summary).
	Summary string `json:"summary"`
}

// render returns the body posted for e to a destination of format, with
// delivery id id.
func render(format, id string, e Event) ([]byte, error) {
	var v any
	switch format {
	case FormatSlack:
		v = slackBody(id, e)
	default:
		v = Body{ID: id, Event: e, Summary: e.Summary()}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("render the %s notification: %w", e.Kind, err)
	}
	return b, nil
}

// slackMessage is a Slack incoming webhook's message: text, and blocks for
// clients that show them.
type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks,omitempty"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func slackBody(id string, e Event) slackMessage {
	text := e.Summary()
	context := fmt.Sprintf("%s · %s · delivery %s", e.Kind, e.Time.UTC().Format("2006-01-02 15:04:05 UTC"), id)
	if e.Digest != "" {
		context += " · " + e.Digest
	}
	return slackMessage{
		Text: text,
		Blocks: []slackBlock{
			{Type: "section", Text: &slackText{Type: "mrkdwn", Text: text}},
			{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: context}}},
		},
	}
}

// Sign returns the Slipway-Signature of body with secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether signature (a Slipway-Signature header) is body's
// with secret; receivers written in Go can use it.
func Verify(secret, body []byte, signature string) bool {
	return hmac.Equal([]byte(signature), []byte(Sign(secret, body)))
}

// deliveryID is the delivery id of an event with key for destination
// dest: 32 hex digits of their SHA-256, or random ones without a key.
func deliveryID(key, dest string) (string, error) {
	if key == "" {
		return newDeliveryID()
	}
	sum := sha256.Sum256([]byte(key + "\x00" + dest))
	return hex.EncodeToString(sum[:16]), nil
}

// newDeliveryID returns a new delivery id: 32 random hex digits.
func newDeliveryID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make a delivery id: %w", err)
	}
	return hex.EncodeToString(b), nil
}
