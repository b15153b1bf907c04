package httpscope

// HeldConns is how many connections have requests held behind others
// (see held): 0 once every request has ended.
func HeldConns() int32 { return held.n.Load() }
