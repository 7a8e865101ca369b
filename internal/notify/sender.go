package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-logr/logr"
)

// Sender delivers notifications from a bounded queue on its own goroutine, retrying
// network errors, 5xx and 429 (honouring Retry-After) with exponential backoff.
type Sender struct {
	// Client posts the webhooks; its Timeout bounds each attempt.
	Client *http.Client
	// Attempts per message, the first included. Defaults to 6.
	Attempts int
	// Backoff is the first retry delay, doubled each time up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
	Log                 logr.Logger

	queue chan job
	// sleep waits d or until ctx ends (tests shorten it).
	sleep func(ctx context.Context, d time.Duration) bool
}

type job struct {
	url string
	n   Notification
}

// NewSender returns a Sender with a queue of the given size; Start runs it.
func NewSender(queue int, log logr.Logger) *Sender {
	return &Sender{
		Client:     &http.Client{Timeout: 10 * time.Second},
		Attempts:   6,
		Backoff:    time.Second,
		MaxBackoff: time.Minute,
		Log:        log,
		queue:      make(chan job, queue),
		sleep:      sleepCtx,
	}
}

// Enqueue hands a notification over without blocking; a full queue drops it (and says so),
// because a rollout must never wait for Slack.
func (s *Sender) Enqueue(webhookURL string, n Notification) bool {
	select {
	case s.queue <- job{url: webhookURL, n: n}:
		return true
	default:
		s.Log.Info("notification queue full: dropped", "rollout", n.Namespace+"/"+n.Rollout, "reason", n.Reason)
		return false
	}
}

// Start delivers until ctx ends (it is a controller-runtime Runnable).
func (s *Sender) Start(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case j := <-s.queue:
			if err := s.deliver(ctx, j); err != nil {
				// The URL is a credential: never logged.
				s.Log.Error(err, "Slack notification not delivered", "rollout", j.n.Namespace+"/"+j.n.Rollout, "reason", j.n.Reason)
			}
		}
	}
}

// permanentError is a rejection retrying cannot fix (e.g. 404: the webhook was revoked).
type permanentError struct{ status int }

func (e *permanentError) Error() string { return fmt.Sprintf("Slack answered %d", e.status) }

func (s *Sender) deliver(ctx context.Context, j job) error {
	body, err := json.Marshal(SlackPayload(j.n))
	if err != nil {
		return err
	}
	wait := s.Backoff
	var last error
	for attempt := 1; attempt <= s.Attempts; attempt++ {
		retryAfter, err := s.post(ctx, j.url, body)
		if err == nil {
			return nil
		}
		last = err
		var perm *permanentError
		if errors.As(err, &perm) || attempt == s.Attempts {
			break
		}
		d := wait
		if retryAfter > d {
			d = retryAfter
		}
		if !s.sleep(ctx, d) {
			return ctx.Err()
		}
		wait *= 2
		if wait > s.MaxBackoff {
			wait = s.MaxBackoff
		}
	}
	return fmt.Errorf("after retries: %w", last)
}

// post sends one attempt; it returns how long Slack asked to wait, if it did.
func (s *Sender) post(ctx context.Context, url string, body []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, &permanentError{} // a malformed URL does not heal
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.Client.Do(req)
	if err != nil {
		// Strip the URL (a credential) that net/http puts in its errors.
		var uerr interface{ Unwrap() error }
		if errors.As(err, &uerr) && uerr.Unwrap() != nil {
			return 0, fmt.Errorf("posting to Slack: %w", uerr.Unwrap())
		}
		return 0, errors.New("posting to Slack failed")
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode < 300:
		return 0, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return time.Duration(ra) * time.Second, fmt.Errorf("Slack answered %d", resp.StatusCode)
	default:
		return 0, &permanentError{status: resp.StatusCode}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
