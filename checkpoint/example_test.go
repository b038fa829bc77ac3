package checkpoint_test

import (
	"encoding/base64"
	"fmt"

	"github.com/tidemark/tidemark/checkpoint"
)

// The log's keys. A real log makes its pair once with GenerateLogKey and
// keeps skey secret.
const (
	skey = "PRIVATE+KEY+audit.example.com/prod+cfa16425+ARp7kTkjNFpHlZwhn/iqAeabLAJIBy7rUflgZWfEedOB"
	vkey = "audit.example.com/prod+cfa16425+AfAbCR/YOt2q++hVLONLaVZdTzNJoTjM4QyW8zRA8fGx"
)

func Example() {
	// The log signs a checkpoint of its tree...
	signer, err := checkpoint.NewLogSigner(skey)
	if err != nil {
		panic(err)
	}
	root, _ := base64.StdEncoding.DecodeString("SBNJTRN+FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7I=")
	signed, err := checkpoint.Sign(checkpoint.Checkpoint{
		Origin: "audit.example.com/prod",
		Size:   10,
		Hash:   root,
	}, signer)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s\n", signed)

	// ...and anyone who knows its public key can check it.
	verifier, err := checkpoint.NewLogVerifier(vkey)
	if err != nil {
		panic(err)
	}
	c, n, err := checkpoint.Open(signed, verifier)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s has %d entries, signed by %s\n", c.Origin, c.Size, n.Sigs[0].Name)

	// A change anywhere breaks it.
	signed[len("audit.example.com/prod\n")] = '9'
	_, _, err = checkpoint.Open(signed, verifier)
	fmt.Println(err)

	// Output:
	// audit.example.com/prod
	// 10
	// SBNJTRN+FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7I=
	//
	// — audit.example.com/prod z6FkJYHgs2mV6zpO6J80kccJHo5RxqMBzZOYOXaHYTjyN64jBWz9kwTW5DRgW8Iov/bGaVtgxFwOAPIkLAbkkDcs9g4=
	//
	// audit.example.com/prod has 10 entries, signed by audit.example.com/prod
	// checkpoint: checkpoint for origin "audit.example.com/prod" has an invalid signature by log key audit.example.com/prod+cfa16425
}
