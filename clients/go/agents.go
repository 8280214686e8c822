package cortex

import (
	"context"
	"fmt"
)

// Agent is an agent connected to a node (presence), with its sessions.
type Agent struct {
	Name        string // empty: the anonymous agent of a broker without tokens
	LastHeardMs uint64 // the latest of its sessions'
	Sessions    []Session
}

// Session is one connection of an agent.
type Session struct {
	Front       string // "quic" or "resp"
	Client      string // the client library's name and version
	ConnectedMs uint64
	LastHeardMs uint64
	Serves      []Served // open subscriptions
	Node        uint64   // the node it is connected to: its cluster ID (0 on a single node)
}

// Served is a stream and group a session subscribes to.
type Served struct {
	Stream, Group string
}

func (a *Agent) encode(e *enc) {
	e.str(a.Name)
	e.u64(a.LastHeardMs)
	e.u64(uint64(len(a.Sessions)))
	for _, s := range a.Sessions {
		e.str(s.Front)
		e.str(s.Client)
		e.u64(s.ConnectedMs)
		e.u64(s.LastHeardMs)
		e.u64(uint64(len(s.Serves)))
		for _, x := range s.Serves {
			e.bytes([]byte(x.Stream))
			e.bytes([]byte(x.Group))
		}
		e.u64(s.Node)
	}
}

func (a *Agent) decode(d *dec) {
	a.Name, a.LastHeardMs = d.str(), d.u64()
	n := d.count(48)
	for i := 0; i < n && d.err == nil; i++ {
		var s Session
		s.Front, s.Client, s.ConnectedMs, s.LastHeardMs = d.str(), d.str(), d.u64(), d.u64()
		m := d.count(16)
		for j := 0; j < m && d.err == nil; j++ {
			s.Serves = append(s.Serves, Served{Stream: string(d.bytes()), Group: string(d.bytes())})
		}
		s.Node = d.u64()
		a.Sessions = append(a.Sessions, s)
	}
}

// Agents lists the agents connected to the node this client talks to and, in a cluster,
// to every other node, by name.
func (c *Client) Agents(ctx context.Context) ([]Agent, error) {
	a, err := c.admin(ctx, adminRequest{Kind: 8})
	if err != nil {
		return nil, err
	}
	if a.Kind != 8 {
		return nil, fmt.Errorf("%w: answer %d to an agents call", ErrProtocol, a.Kind)
	}
	return a.Agents, nil
}
