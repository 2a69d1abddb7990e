package broadcast

import "testing"

func TestSignal(t *testing.T) {
	var s Signal
	before := s.Wait()
	select {
	case <-before:
		t.Fatal("closed before Fire")
	default:
	}
	s.Fire()
	<-before // closed by Fire
	after := s.Wait()
	select {
	case <-after:
		t.Fatal("a Wait after Fire is closed by the next Fire only")
	default:
	}
	s.Fire()
	<-after
}
