package plugins

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

// Journal makes a connector's sends idempotent: it remembers the receipt
// of each idempotency key sent, in an append-only file that is fsynced
// after each send, so that a repeated key gets the first receipt, even
// from a restarted plugin process. Concurrent sends of one key wait for
// each other. With an empty path it remembers in memory only.
//
// It narrows but cannot close the window every sender has: a process that
// dies after the channel accepted a message and before the journal write
// sends it again on retry. Connectors pass the key on where the channel
// can use it (an Idempotency-Key header, a Message-ID).
type Journal struct {
	mu       sync.Mutex
	sent     map[string]Receipt
	inFlight map[string]chan struct{}
	f        *os.File
}

type journalEntry struct {
	Key        string `json:"key"`
	ProviderID string `json:"provider_id"`
	Status     string `json:"status"`
}

// OpenJournal opens (creating it) the journal file at path and reads the
// keys already sent; a torn last line, left by a crash mid-write, is
// ignored: that send was never confirmed.
func OpenJournal(path string) (*Journal, error) {
	j := &Journal{sent: map[string]Receipt{}, inFlight: map[string]chan struct{}{}}
	if path == "" {
		return j, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("plugins: journal: %w", err)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var last byte = '\n'
	for sc.Scan() {
		var e journalEntry
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Key == "" {
			continue
		}
		st, _ := ParseDeliveryStatus(e.Status)
		j.sent[e.Key] = Receipt{ProviderID: e.ProviderID, Status: st}
	}
	if err := sc.Err(); err != nil {
		f.Close()
		return nil, fmt.Errorf("plugins: reading journal %s: %w", path, err)
	}
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		var b [1]byte
		if _, err := f.ReadAt(b[:], st.Size()-1); err == nil {
			last = b[0]
		}
	}
	if last != '\n' {
		// End the torn line, so that the next record starts on its own.
		if _, err := f.Write([]byte{'\n'}); err != nil {
			f.Close()
			return nil, fmt.Errorf("plugins: journal %s: %w", path, err)
		}
	}
	j.f = f
	return j, nil
}

// Once returns the receipt recorded for key, or calls send and records
// its receipt. A send that fails records nothing.
func (j *Journal) Once(ctx context.Context, key string, send func() (Receipt, error)) (Receipt, error) {
	if key == "" {
		return Receipt{}, Rejectf("an idempotency key is required")
	}
	for {
		j.mu.Lock()
		if rc, ok := j.sent[key]; ok {
			j.mu.Unlock()
			return rc, nil
		}
		wait, busy := j.inFlight[key]
		if !busy {
			j.inFlight[key] = make(chan struct{})
			j.mu.Unlock()
			break
		}
		j.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return Receipt{}, ctx.Err()
		}
	}
	defer func() {
		j.mu.Lock()
		close(j.inFlight[key])
		delete(j.inFlight, key)
		j.mu.Unlock()
	}()
	rc, err := send()
	if err != nil {
		return Receipt{}, err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.sent[key] = rc
	if j.f != nil {
		b, _ := json.Marshal(journalEntry{Key: key, ProviderID: rc.ProviderID, Status: rc.Status.String()})
		if _, err := j.f.Write(append(b, '\n')); err != nil {
			return rc, fmt.Errorf("plugins: sent %s but could not journal it: %w", rc.ProviderID, err)
		}
		if err := j.f.Sync(); err != nil {
			return rc, fmt.Errorf("plugins: sent %s but could not journal it: %w", rc.ProviderID, err)
		}
	}
	return rc, nil
}

// Close closes the journal file.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}
