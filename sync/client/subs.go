package client

import "sync"

// without returns s without its first element for which match holds. It
// copies (copy on write): notifiers may still hold the old slice.
func without[T any](s []T, match func(T) bool) []T {
	for i, x := range s {
		if match(x) {
			return append(s[:i:i], s[i+1:]...)
		}
	}
	return s
}

// unsubscriber returns the unsubscribe function of a callback
// registration: the first call runs remove with mu held, later calls do
// nothing.
func unsubscriber(mu *sync.Mutex, remove func()) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			mu.Lock()
			defer mu.Unlock()
			remove()
		})
	}
}
