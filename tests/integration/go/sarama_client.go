// A Go client of Strom built on Sarama, for tests/integration/test_go_clients.py: reads one
// JSON command from argv, runs its steps in order against the broker and prints one JSON
// answer per step.
//
//	sarama_client '{"bootstrap": "...", "security": {...}, "steps": [{"op": ...}, ...]}'
//
// security: protocol (PLAINTEXT, SASL_PLAINTEXT, SASL_SSL), mechanism (PLAIN, SCRAM-SHA-256,
// SCRAM-SHA-512), user, password, ca (a PEM file the broker's certificate chains to).
// ACLs and filters carry Kafka's numeric codes (Sarama's enums are Kafka's): resource_type,
// resource_name, pattern_type, principal, host, operation, permission.
//
// Sarama 1.22 (Debian's) has no client quota calls, and its ClusterAdmin sends the ACL
// requests at version 0 (LITERAL patterns only, errors of a creation dropped): the "admin"
// steps use ClusterAdmin as a Go program would, the others send Sarama's own request types
// at the version asked for to the controller, reporting every error code.
//
// STROM_SARAMA_LOG=<file> appends Sarama's own log to that file.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/ioutil"
	"log"
	"os"
	"strings"
	"time"

	"github.com/Shopify/sarama"
	"github.com/xdg-go/scram"
)

type security struct {
	Protocol  string `json:"protocol"`
	Mechanism string `json:"mechanism"`
	User      string `json:"user"`
	Password  string `json:"password"`
	CA        string `json:"ca"`
}

type binding struct {
	ResourceType int8    `json:"resource_type"`
	ResourceName *string `json:"resource_name"`
	PatternType  int8    `json:"pattern_type"`
	Principal    *string `json:"principal"`
	Host         *string `json:"host"`
	Operation    int8    `json:"operation"`
	Permission   int8    `json:"permission"`
}

type step struct {
	Op       string    `json:"op"`
	Version  int16     `json:"version"`
	Acls     []binding `json:"acls"`
	Filters  []binding `json:"filters"`
	Topic    string    `json:"topic"`
	Count    int       `json:"count"`
	Size     int       `json:"size"`
	ClientID string    `json:"client_id"`
	Group    string    `json:"group"`
}

type command struct {
	Bootstrap string   `json:"bootstrap"`
	Security  security `json:"security"`
	Steps     []step   `json:"steps"`
}

type answer map[string]interface{}

// scramClient adapts xdg-go/scram's conversation to Sarama's SCRAMClient.
type scramClient struct {
	hash         scram.HashGeneratorFcn
	conversation *scram.ClientConversation
}

func (s *scramClient) Begin(user, password, authzID string) error {
	client, err := s.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	s.conversation = client.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) {
	return s.conversation.Step(challenge)
}

func (s *scramClient) Done() bool { return s.conversation.Done() }

func config(sec security, clientID string) (*sarama.Config, error) {
	conf := sarama.NewConfig()
	conf.Version = sarama.V2_0_0_0
	conf.ClientID = "strom-sarama"
	if clientID != "" {
		conf.ClientID = clientID
	}
	conf.Metadata.Retry.Max = 2
	conf.Metadata.Retry.Backoff = 200 * time.Millisecond
	conf.Producer.Return.Successes = true
	conf.Producer.RequiredAcks = sarama.WaitForAll
	conf.Producer.Retry.Max = 0
	conf.Consumer.Return.Errors = true
	if strings.HasSuffix(sec.Protocol, "SSL") {
		pem, err := ioutil.ReadFile(sec.CA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", sec.CA)
		}
		conf.Net.TLS.Enable = true
		conf.Net.TLS.Config = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if strings.HasPrefix(sec.Protocol, "SASL") {
		conf.Net.SASL.Enable = true
		conf.Net.SASL.Handshake = true
		conf.Net.SASL.Mechanism = sarama.SASLMechanism(sec.Mechanism)
		conf.Net.SASL.User = sec.User
		conf.Net.SASL.Password = sec.Password
		switch sec.Mechanism {
		case "SCRAM-SHA-256":
			conf.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient {
				return &scramClient{hash: scram.SHA256}
			}
		case "SCRAM-SHA-512":
			conf.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient {
				return &scramClient{hash: scram.SHA512}
			}
		}
	}
	return conf, conf.Validate()
}

// errorAnswer names Kafka's error code when the error carries one.
func errorAnswer(err error) answer {
	var perrs sarama.ProducerErrors
	if errors.As(err, &perrs) && len(perrs) > 0 {
		err = perrs[0].Err
	}
	var perr *sarama.ProducerError
	if errors.As(err, &perr) {
		err = perr.Err
	}
	var cerr *sarama.ConsumerError
	if errors.As(err, &cerr) {
		err = cerr.Err
	}
	out := answer{"error": err.Error()}
	var kerr sarama.KError
	if errors.As(err, &kerr) {
		out["error_code"] = int16(kerr)
	}
	return out
}

func resource(b binding) sarama.Resource {
	name := ""
	if b.ResourceName != nil {
		name = *b.ResourceName
	}
	return sarama.Resource{
		ResourceType:       sarama.AclResourceType(b.ResourceType),
		ResourceName:       name,
		ResoucePatternType: sarama.AclResourcePatternType(b.PatternType),
	}
}

func acl(b binding) sarama.Acl {
	principal, host := "", ""
	if b.Principal != nil {
		principal = *b.Principal
	}
	if b.Host != nil {
		host = *b.Host
	}
	return sarama.Acl{
		Principal:      principal,
		Host:           host,
		Operation:      sarama.AclOperation(b.Operation),
		PermissionType: sarama.AclPermissionType(b.Permission),
	}
}

func filter(b binding, version int16) sarama.AclFilter {
	return sarama.AclFilter{
		Version:                   int(version),
		ResourceType:              sarama.AclResourceType(b.ResourceType),
		ResourceName:              b.ResourceName,
		ResourcePatternTypeFilter: sarama.AclResourcePatternType(b.PatternType),
		Principal:                 b.Principal,
		Host:                      b.Host,
		Operation:                 sarama.AclOperation(b.Operation),
		PermissionType:            sarama.AclPermissionType(b.Permission),
	}
}

func bindingOf(r sarama.Resource, a sarama.Acl) []interface{} {
	return []interface{}{
		r.ResourceType, r.ResourceName, r.ResoucePatternType,
		a.Principal, a.Host, a.Operation, a.PermissionType,
	}
}

func describedBindings(resources []sarama.ResourceAcls) [][]interface{} {
	out := [][]interface{}{}
	for _, r := range resources {
		for _, a := range r.Acls {
			out = append(out, bindingOf(r.Resource, *a))
		}
	}
	return out
}

type session struct {
	bootstrap []string
	sec       security
	client    sarama.Client
	admin     sarama.ClusterAdmin
}

func (s *session) getClient() (sarama.Client, error) {
	if s.client == nil {
		conf, err := config(s.sec, "")
		if err != nil {
			return nil, err
		}
		if s.client, err = sarama.NewClient(s.bootstrap, conf); err != nil {
			return nil, err
		}
	}
	return s.client, nil
}

func (s *session) getAdmin() (sarama.ClusterAdmin, error) {
	if s.admin == nil {
		conf, err := config(s.sec, "")
		if err != nil {
			return nil, err
		}
		if s.admin, err = sarama.NewClusterAdmin(s.bootstrap, conf); err != nil {
			return nil, err
		}
	}
	return s.admin, nil
}

func (s *session) controller() (*sarama.Broker, error) {
	client, err := s.getClient()
	if err != nil {
		return nil, err
	}
	return client.Controller()
}

func (s *session) close() {
	if s.admin != nil {
		s.admin.Close()
	}
	if s.client != nil {
		s.client.Close()
	}
}

func (s *session) run(st step) answer {
	switch st.Op {
	case "connect":
		return s.connect()
	case "admin_create_acls":
		admin, err := s.getAdmin()
		if err != nil {
			return errorAnswer(err)
		}
		for _, b := range st.Acls {
			if err := admin.CreateACL(resource(b), acl(b)); err != nil {
				return errorAnswer(err)
			}
		}
		return answer{}
	case "admin_list_acls":
		admin, err := s.getAdmin()
		if err != nil {
			return errorAnswer(err)
		}
		found, err := admin.ListAcls(filter(st.Filters[0], 0))
		if err != nil {
			return errorAnswer(err)
		}
		return answer{"acls": describedBindings(found)}
	case "admin_delete_acls":
		admin, err := s.getAdmin()
		if err != nil {
			return errorAnswer(err)
		}
		deleted, err := admin.DeleteACL(filter(st.Filters[0], 0), false)
		if err != nil {
			return errorAnswer(err)
		}
		out := [][]interface{}{}
		for _, m := range deleted {
			out = append(out, bindingOf(m.Resource, m.Acl))
		}
		return answer{"deleted": out}
	case "create_acls":
		return s.createAcls(st)
	case "describe_acls":
		return s.describeAcls(st)
	case "delete_acls":
		return s.deleteAcls(st)
	case "produce":
		return s.produce(st)
	case "produce_throttled":
		return s.produceThrottled(st)
	case "consume":
		return s.consume(st)
	case "group_consume":
		return s.groupConsume(st)
	case "coordinator":
		client, err := s.getClient()
		if err != nil {
			return errorAnswer(err)
		}
		coordinator, err := client.Coordinator(st.Group)
		if err != nil {
			return errorAnswer(err)
		}
		return answer{"coordinator": coordinator.ID()}
	}
	return answer{"error": "unknown op " + st.Op}
}

// connect opens one connection (authenticating on SASL listeners) and asks for metadata, so
// that an authentication failure is reported with its own error rather than as no broker.
func (s *session) connect() answer {
	conf, err := config(s.sec, "")
	if err != nil {
		return errorAnswer(err)
	}
	broker := sarama.NewBroker(s.bootstrap[0])
	if err := broker.Open(conf); err != nil {
		return errorAnswer(err)
	}
	defer broker.Close()
	md, err := broker.GetMetadata(&sarama.MetadataRequest{Version: 1})
	if err != nil {
		return errorAnswer(err)
	}
	return answer{"brokers": len(md.Brokers)}
}

func (s *session) createAcls(st step) answer {
	b, err := s.controller()
	if err != nil {
		return errorAnswer(err)
	}
	req := &sarama.CreateAclsRequest{Version: st.Version}
	for _, x := range st.Acls {
		req.AclCreations = append(req.AclCreations, &sarama.AclCreation{Resource: resource(x), Acl: acl(x)})
	}
	resp, err := b.CreateAcls(req)
	if err != nil {
		return errorAnswer(err)
	}
	codes := []int16{}
	for _, r := range resp.AclCreationResponses {
		codes = append(codes, int16(r.Err))
	}
	return answer{"error_codes": codes}
}

func (s *session) describeAcls(st step) answer {
	b, err := s.controller()
	if err != nil {
		return errorAnswer(err)
	}
	resp, err := b.DescribeAcls(&sarama.DescribeAclsRequest{
		Version: int(st.Version), AclFilter: filter(st.Filters[0], st.Version),
	})
	if err != nil {
		return errorAnswer(err)
	}
	found := []sarama.ResourceAcls{}
	for _, r := range resp.ResourceAcls {
		found = append(found, *r)
	}
	return answer{"error_code": int16(resp.Err), "acls": describedBindings(found)}
}

func (s *session) deleteAcls(st step) answer {
	b, err := s.controller()
	if err != nil {
		return errorAnswer(err)
	}
	req := &sarama.DeleteAclsRequest{Version: int(st.Version)}
	for _, f := range st.Filters {
		x := filter(f, st.Version)
		req.Filters = append(req.Filters, &x)
	}
	resp, err := b.DeleteAcls(req)
	if err != nil {
		return errorAnswer(err)
	}
	results := []answer{}
	for _, fr := range resp.FilterResponses {
		deleted := [][]interface{}{}
		for _, m := range fr.MatchingAcls {
			deleted = append(deleted, bindingOf(m.Resource, m.Acl))
		}
		results = append(results, answer{"error_code": int16(fr.Err), "deleted": deleted})
	}
	return answer{"results": results}
}

func values(st step) [][]byte {
	out := make([][]byte, st.Count)
	for i := range out {
		v := fmt.Sprintf("%s-%d-", st.Topic, i)
		if st.Size > len(v) {
			v += strings.Repeat("x", st.Size-len(v))
		}
		out[i] = []byte(v)
	}
	return out
}

// produce sends count records with Sarama's SyncProducer (acks=all, no retries).
func (s *session) produce(st step) answer {
	conf, err := config(s.sec, st.ClientID)
	if err != nil {
		return errorAnswer(err)
	}
	producer, err := sarama.NewSyncProducer(s.bootstrap, conf)
	if err != nil {
		return errorAnswer(err)
	}
	defer producer.Close()
	msgs := []*sarama.ProducerMessage{}
	for _, v := range values(st) {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: st.Topic, Partition: 0, Value: sarama.ByteEncoder(v)})
	}
	if err := producer.SendMessages(msgs); err != nil {
		return errorAnswer(err)
	}
	offsets := []int64{}
	for _, m := range msgs {
		offsets = append(offsets, m.Offset)
	}
	return answer{"offsets": offsets}
}

// produceThrottled sends count Produce requests of one record each to partition 0's leader
// (Sarama's producers do not show throttle_time_ms; its Broker API returns the response).
func (s *session) produceThrottled(st step) answer {
	conf, err := config(s.sec, st.ClientID)
	if err != nil {
		return errorAnswer(err)
	}
	client, err := sarama.NewClient(s.bootstrap, conf)
	if err != nil {
		return errorAnswer(err)
	}
	defer client.Close()
	leader, err := client.Leader(st.Topic, 0)
	if err != nil {
		return errorAnswer(err)
	}
	throttles := []int64{}
	for _, v := range values(st) {
		now := time.Now()
		batch := &sarama.RecordBatch{
			Version:        2,
			FirstTimestamp: now,
			MaxTimestamp:   now,
			ProducerID:     -1,
			ProducerEpoch:  -1,
			FirstSequence:  -1,
			Records:        []*sarama.Record{{Value: v}},
		}
		req := &sarama.ProduceRequest{Version: 3, RequiredAcks: sarama.WaitForAll, Timeout: 10000}
		req.AddBatch(st.Topic, 0, batch)
		resp, err := leader.Produce(req)
		if err != nil {
			return errorAnswer(err)
		}
		if block := resp.GetBlock(st.Topic, 0); block == nil || block.Err != sarama.ErrNoError {
			return answer{"error": "produce failed", "error_code": int16(block.Err)}
		}
		throttles = append(throttles, int64(resp.ThrottleTime/time.Millisecond))
	}
	return answer{"throttle_ms": throttles}
}

// consume reads count records of partition 0 from the earliest offset.
func (s *session) consume(st step) answer {
	conf, err := config(s.sec, st.ClientID)
	if err != nil {
		return errorAnswer(err)
	}
	consumer, err := sarama.NewConsumer(s.bootstrap, conf)
	if err != nil {
		return errorAnswer(err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(st.Topic, 0, sarama.OffsetOldest)
	if err != nil {
		return errorAnswer(err)
	}
	defer pc.Close()
	got := []string{}
	deadline := time.After(30 * time.Second)
	for len(got) < st.Count {
		select {
		case m := <-pc.Messages():
			got = append(got, string(m.Value))
		case err := <-pc.Errors():
			return errorAnswer(err)
		case <-deadline:
			return answer{"error": "timed out", "values": got}
		}
	}
	return answer{"values": got}
}

type groupHandler struct{ got chan string }

func (h groupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		sess.MarkMessage(m, "")
		select {
		case h.got <- string(m.Value):
		case <-sess.Context().Done():
			return nil
		}
	}
	return nil
}

// groupConsume reads count records as a member of st.Group (from the earliest offset when the
// group has none committed), committing its offsets when it leaves. Sarama 1.22 retries a
// FindCoordinator error for ever here (the "coordinator" step shows it); errors of JoinGroup
// and later end the step.
func (s *session) groupConsume(st step) answer {
	conf, err := config(s.sec, st.ClientID)
	if err != nil {
		return errorAnswer(err)
	}
	conf.Consumer.Offsets.Initial = sarama.OffsetOldest
	conf.Consumer.Group.Rebalance.Retry.Max = 1
	group, err := sarama.NewConsumerGroup(s.bootstrap, st.Group, conf)
	if err != nil {
		return errorAnswer(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	handler := groupHandler{got: make(chan string)}
	failed := make(chan error, 2)
	go func() {
		for err := range group.Errors() {
			select {
			case failed <- err:
			default:
			}
		}
	}()
	go func() {
		for ctx.Err() == nil {
			if err := group.Consume(ctx, []string{st.Topic}, handler); err != nil {
				select {
				case failed <- err:
				default:
				}
				return
			}
		}
	}()
	got := []string{}
	out := answer{}
	deadline := time.After(30 * time.Second)
	for len(got) < st.Count && len(out) == 0 {
		select {
		case v := <-handler.got:
			got = append(got, v)
		case err := <-failed:
			out = errorAnswer(err)
		case <-deadline:
			out = answer{"error": "timed out"}
		}
	}
	cancel()
	if err := group.Close(); err != nil && len(out) == 0 {
		return errorAnswer(err)
	}
	if len(out) == 0 {
		out["values"] = got
	}
	return out
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sarama_client JSON-COMMAND")
		os.Exit(2)
	}
	var cmd command
	if err := json.Unmarshal([]byte(os.Args[1]), &cmd); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// STROM_SARAMA_LOG names a file for Sarama's own log, to see what it did.
	if path := os.Getenv("STROM_SARAMA_LOG"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer f.Close()
		sarama.Logger = log.New(f, "[sarama] ", log.LstdFlags|log.Lmicroseconds)
	}
	s := &session{bootstrap: strings.Split(cmd.Bootstrap, ","), sec: cmd.Security}
	defer s.close()
	answers := []answer{}
	for _, st := range cmd.Steps {
		answers = append(answers, s.run(st))
	}
	out, _ := json.Marshal(answers)
	os.Stdout.Write(out)
}
