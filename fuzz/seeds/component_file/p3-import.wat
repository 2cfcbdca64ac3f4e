(component
  (type (;0;)
    (instance)
  )
  (import "wasi:cli/stdout@0.3.0" (instance (;0;) (type 0)))
)
